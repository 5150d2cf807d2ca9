# syntax=docker/dockerfile:1
# nat464-sidecar: a static binary on distroless, run as the numeric nonroot user.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t nat464-sidecar .
# Without a Docker engine, `make image` builds the same image as an OCI archive (deploy/cmd/mkimage).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, as their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/ ./cmd/nat464-sidecar ./cmd/nat464-injector

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="nat464-sidecar" \
      org.opencontainers.image.description="Bridges IPv4-only apps into IPv6-only Kubernetes pods" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/nat464/nat464-sidecar" \
      org.opencontainers.image.licenses="${LICENSES}"
COPY --from=build --chown=0:0 --chmod=0555 /out/nat464-sidecar /nat464-sidecar
# The admission webhook (deploy/injector runs it as the command); the sidecar is the entrypoint.
COPY --from=build --chown=0:0 --chmod=0555 /out/nat464-injector /nat464-injector
# Numeric, so that Kubernetes' runAsNonRoot can verify it (it cannot resolve a user name).
USER 65532:65532
# Inbound (default mapping), outbound proxy (on 127.0.0.1 by default), admin/probes/metrics.
EXPOSE 8080 1080 9464
ENTRYPOINT ["/nat464-sidecar"]
