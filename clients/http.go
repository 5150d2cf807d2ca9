package clients

import (
	"encoding/json"
	"net/http"
	"net/netip"
)

// Path is where the admin server serves Handler.
const Path = "/clients"

// Response is the body of GET /clients.
type Response struct {
	Tables  []Summary `json:"tables"`
	Clients []Entry   `json:"clients"`
}

// Handler serves the tables as JSON: a summary per table and every client with its source,
// in assignment order. ?source=ADDR or ?client=ADDR keep only the matching entry (the way back
// from an address in the app's log to the real client); a malformed one is a 400.
func Handler(tables []*Table) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var keep func(client, source netip.Addr) bool
		q := r.URL.Query()
		for _, name := range []string{"source", "client"} {
			v := q.Get(name)
			if v == "" {
				continue
			}
			a, err := netip.ParseAddr(v)
			if err != nil {
				http.Error(w, "clients: "+name+": want an IP address", http.StatusBadRequest)
				return
			}
			a = Key(a)
			if name == "source" {
				keep = func(_, s netip.Addr) bool { return s == a }
			} else {
				keep = func(c, _ netip.Addr) bool { return c == a }
			}
		}
		resp := Response{Tables: []Summary{}, Clients: []Entry{}}
		for _, t := range tables {
			s, es := t.Snapshot(keep)
			resp.Tables = append(resp.Tables, s)
			resp.Clients = append(resp.Clients, es...)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(resp)
	})
}
