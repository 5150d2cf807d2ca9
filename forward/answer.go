package forward

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

// Realm is the realm of the Basic challenge sent with 407, the same as the CONNECT path's.
const Realm = "nat464"

// writeError writes an error answer whose body says what happened, and which closes the
// connection.
func writeError(w *bufio.Writer, status int, msg string) {
	body := fmt.Sprintf("%d %s\n%s\n", status, http.StatusText(status), msg)
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	if status == http.StatusProxyAuthRequired {
		fmt.Fprintf(w, "Proxy-Authenticate: Basic realm=%q\r\n", Realm)
	}
	fmt.Fprintf(w, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\nVia: %s\r\n\r\n%s",
		len(body), via, body)
}

// parseBasic decodes a Proxy-Authorization value with the Basic scheme (RFC 7617).
func parseBasic(v string) (user, pass string, ok bool) {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(v), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}
