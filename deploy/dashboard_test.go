package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"testing"
)

// grafanaPanel is what the checks read of a Grafana panel (rows nest their collapsed panels).
type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaDashboard struct {
	Title      string         `json:"title"`
	UID        string         `json:"uid"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []grafanaVar `json:"list"`
	} `json:"templating"`
}

type grafanaVar struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Query any    `json:"query"` // a string, or {"query": "..."}
}

func loadDashboard(t *testing.T) *grafanaDashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	d := &grafanaDashboard{}
	if err := json.Unmarshal(data, d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// panels returns every panel, those nested in rows included.
func (d *grafanaDashboard) panels() []grafanaPanel {
	var out []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// labelValues matches Grafana's label_values(SELECTOR, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// exprs returns every PromQL expression of the dashboard, named by where it is: the panels'
// targets and the selectors of the label_values variable queries.
func (d *grafanaDashboard) exprs() (map[string]string, error) {
	out := map[string]string{}
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %q target %s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		sm := labelValues.FindStringSubmatch(q)
		if sm == nil {
			return nil, fmt.Errorf("variable %s: query %q is not label_values(SELECTOR, label)", v.Name, q)
		}
		out["variable "+v.Name] = sm[1]
	}
	return out, nil
}

// TestDashboardShape checks the dashboard as Grafana would load it: unique panel ids, every
// panel on the 24-column grid with a title, every query panel on the ${datasource} variable
// with expressions that tokenize, and the panels the issue asks for.
func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q uid %q: want both", d.Title, d.UID)
	}
	ids := map[int]bool{}
	for _, p := range d.panels() {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d is zero or repeated", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Title == "" || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %d %q: no title or off the grid: %+v", p.ID, p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refIDs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || refIDs[tg.RefID] {
				t.Errorf("panel %q: empty expression or repeated refId %q", p.Title, tg.RefID)
			}
			refIDs[tg.RefID] = true
		}
	}
	exprs, err := d.exprs()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for where, e := range exprs {
		refs, err := parsePromQL(e)
		if err != nil {
			t.Errorf("%s: %q: %v", where, e, err)
			continue
		}
		if len(refs.metrics) == 0 {
			t.Errorf("%s: %q reads no metric", where, e)
		}
		for _, m := range refs.metrics {
			used[m] = true
		}
	}
	// What the issue asks the dashboard to show.
	for _, m := range []string{
		"nat464_loop_flows_total", "nat464_loop_flows_active", // flows, rate and active, by kind
		"nat464_loop_upstream_connect_failures_total", "nat464_loop_rejects_total", // connect outcomes
		"nat464_eyeballs_winners_total",                             // Happy Eyeballs winners by family
		"nat464_dns_queries_total", "nat464_resolver_queries_total", // DNS answers, resolver
		"nat464_splice_pipes_in_use", "nat464_splice_pool_exhausted_total", "nat464_splice_copy_buffers_in_use", // pipe pool
		"process_open_fds", "process_max_fds", // open-file headroom
		"nat464_admin_ready", "nat464_admin_draining", // readiness, drain
		"nat464_udp_sessions_active", "nat464_udp_drops_total", // UDP sessions and drops
	} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	if !slices.ContainsFunc(d.Templating.List, func(v grafanaVar) bool { return v.Name == "datasource" && v.Type == "datasource" }) {
		t.Error("no datasource variable: the panels' ${datasource} would not resolve")
	}
}
