// Package e2e holds the end-to-end tests of nat464-sidecar in the IPv6-only pod lab
// (test/lab/lab.sh). The tests build the real binary, run it inside the lab's pod namespace as
// uid 65532 with every capability dropped, and check it with real clients (curl, proxychains4,
// an outside IPv6 client, and in TestClientMatrix every common client's proxy setting) against
// real NAT64 (tayga) and DNS64 (unbound).
//
// The tests carry the build tag e2e, so `go test ./...` compiles this package empty. As root:
//
//	go test -tags e2e -count=1 ./test/e2e/
//
// They need Linux, root and the lab tools (test/lab/deps.sh installs them). Otherwise they skip,
// except under CI=true, where a missing prerequisite is a failure. NAT464_E2E_KEEP_LAB=1 leaves
// the lab up afterwards for inspection (test/lab/lab.sh down removes it); NAT464_E2E_ARGS adds
// flags to every sidecar the tests start (for example "--engine goroutine").
package e2e
