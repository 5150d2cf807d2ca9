package egress

import (
	"bufio"
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
)

// StaticNames reads a hosts file (Kubernetes hostAliases end up there) and returns the lines
// whose address lies in r, each address with the first name on its line: the name the sidecar
// dials for a connection to that address. A missing file has none.
func StaticNames(path string, r netip.Prefix) (map[netip.Addr]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseStatic(f, r.Masked())
}

func parseStatic(rd io.Reader, r netip.Prefix) (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		a = a.Unmap()
		if _, dup := out[a]; dup || !r.Contains(a) {
			continue // the first line for an address wins, as in glibc
		}
		out[a] = fields[1]
	}
	return out, sc.Err()
}
