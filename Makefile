# nat464-sidecar — `make help` lists the targets.
SHELL := bash
.DEFAULT_GOAL := help

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/nat464-sidecar
# An execution count, not a duration: Go 1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" when a duration -fuzztime expires (go.dev/issue/75804, fixed in 1.27).
# 15,000 executions per target keep `make test` warm under 10 minutes with 24 targets (30,000
# took about a minute more); fuzz longer by hand: make test-fuzz FUZZTIME=1000000x.
FUZZTIME ?= 15000x
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
DIST    ?= dist
# The chaos suite's bound; a release soak (CHAOS_SOAK=30m) needs a longer one (CHAOS_TIMEOUT=45m).
CHAOS_TIMEOUT ?= 15m
export CGO_ENABLED ?= 0

.PHONY: help build run demo test test-e2e test-chaos lab-up lab-down test-unit test-fuzz test-bench-once test-modules k8s-bins check image docker-image bench bench-quick bench-deps bench-build

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/nat464-sidecar (static, version stamped)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nat464-sidecar

run: build ## build and run the sidecar with its defaults (inbound [::]:8080 -> 127.0.0.1:80, proxy 127.0.0.1:1080 and [::1]:1080, admin [::]:9464)
	./$(BIN) $(ARGS)

demo: build ## on loopback: an IPv4-only app reached over [::1] through the sidecar, and an IPv6-only server reached by name through the proxy
	./scripts/demo.sh

test: check test-unit test-e2e test-chaos ## the full suite, as CI runs it (Linux/root tests included; CI=true turns their skips into failures)
	@# The last three share no port, namespace or file and none times anything: run side by
	@# side, the API server's start and the bench module's waits overlap the fuzzing (about a
	@# minute less), with each one's output kept together.
	$(MAKE) -j3 --output-sync=target test-fuzz test-bench-once test-modules

test-unit: ## go test of the sidecar module (unit, relay, integration and lab e2e tests)
	$(GO) test -count=1 -timeout 15m ./...

test-e2e: ## the IPv6-only pod lab suite (tayga NAT64, unbound DNS64, network namespaces): needs root on Linux; required when CI=true
	@if [ "$$CI" = true ] || { [ "$$(id -u)" = 0 ] && [ "$$(uname -s)" = Linux ]; }; then \
		$(GO) test -tags e2e -count=1 -timeout 10m ./test/e2e/; \
	else echo "test-e2e: skipped (needs root on Linux; test/lab/README.md)"; fi

test-chaos: ## the chaos and soak suite against the real binary on loopback (a few minutes; CHAOS_SOAK=30m CHAOS_TIMEOUT=45m for a release soak)
	$(GO) test -tags chaos -count=1 -timeout $(CHAOS_TIMEOUT) -v ./test/chaos/
	$(GO) test -tags chaos -count=1 -timeout 5m -run '^TestChaos' -v ./cmd/nat464-sidecar/

lab-up: ## start the IPv6-only pod lab (root; MODE=wkp|nsp)
	test/lab/lab.sh up --mode $(or $(MODE),wkp)

lab-down: ## tear the lab down completely
	test/lab/lab.sh down

test-fuzz: ## run every fuzz target for FUZZTIME
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			out=$$($(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg 2>&1) || { echo "$$out" | tail -40; exit 1; }; \
		done; done

test-bench-once: ## run every micro-benchmark once so none rots
	$(GO) test -count=1 -run='^$$' -bench=. -benchtime=1x ./... >/dev/null

k8s-bins: ## build kube-apiserver and etcd for deploy's admission tests (cached under /var/cache/nat464-k8s; minutes when cold)
	deploy/k8s/build.sh >/dev/null

test-modules: k8s-bins ## tests of the deploy and bench modules (deploy's against a real kube-apiserver)
	cd deploy && $(GO) test -count=1 ./...
	cd bench && test -z "$$(gofmt -l .)" && $(GO) vet ./... && GOOS=darwin $(GO) vet ./... && $(GO) test -count=1 ./...

check: ## gofmt, go vet, cross-build for darwin (keeps the portable fallback compiling)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/
	$(GO) vet -tags chaos ./test/chaos/
	GOOS=darwin $(GO) vet -tags chaos ./test/chaos/
	GOOS=darwin $(GO) vet ./...
	GOOS=darwin $(GO) build ./...
	cd deploy && out=$$(gofmt -l .) && [ -z "$$out" ] || { echo "gofmt needed: $$out"; exit 1; }
	cd deploy && $(GO) vet ./... && GOOS=darwin $(GO) vet ./...
	cd test/lab/quic && $(GO) vet ./...

image: ## build the container image without Docker: dist/nat464-sidecar-oci.tar, or under DIST=dir (load with docker/podman load -i, or skopeo copy oci-archive:)
	mkdir -p $(DIST)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/ ./cmd/nat464-sidecar ./cmd/nat464-injector
	cd deploy && SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./cmd/mkimage -binary $(abspath $(DIST))/nat464-sidecar \
		-injector $(abspath $(DIST))/nat464-injector \
		-version $(VERSION) -revision=$(REVISION) -o $(abspath $(DIST))/nat464-sidecar-oci.tar

docker-image: ## build the same image with a Docker engine (distroless base; needs a Docker daemon)
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t nat464-sidecar:$(VERSION) .

bench-build: ## build bin/nat464-sidecar and bin/nat464-bench (bench/ is its own module)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nat464-sidecar
	cd bench && $(GO) build -o ../bin/nat464-bench .

bench: bench-build ## full benchmark against direct and the peers (about 26 min) -> bench/results/full
	bench/run.sh full results/full ../$(BIN)

bench-quick: bench-build ## quick benchmark, a sanity check (about 2.5 min) -> bench/results/quick
	bench/run.sh quick results/quick ../$(BIN)

bench-deps: ## install the peers the benchmark compares against (haproxy 6tunnel socat dante-server microsocks tinyproxy) and perf
	sh bench/deps.sh
