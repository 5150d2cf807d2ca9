// Command mkimage builds the nat464-sidecar container image without a Docker engine and writes it
// as an OCI image layout tarball:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$V" -o dist/nat464-sidecar ./cmd/nat464-sidecar
//	cd deploy && go run ./cmd/mkimage -binary ../dist/nat464-sidecar -version $V -o ../dist/nat464-sidecar-oci.tar
//
// Load the result with `docker load -i` (Docker 25+), `podman load -i`, or copy it to a registry
// with `skopeo copy oci-archive:dist/nat464-sidecar-oci.tar docker://REGISTRY/nat464-sidecar:$V`.
// Timestamps come from SOURCE_DATE_EPOCH (or 0), so the same binary gives the same digest. It
// prints the image reference and the manifest digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nat464/nat464-sidecar/deploy/image"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mkimage:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o image.Options
	fs.StringVar(&o.Binary, "binary", "", "static nat464-sidecar executable (required)")
	fs.StringVar(&o.InjectorBinary, "injector", "", "static nat464-injector executable, added as /nat464-injector")
	fs.StringVar(&o.Version, "version", "dev", "version label and tag")
	fs.StringVar(&o.Revision, "revision", "", "source revision label (e.g. the git commit)")
	fs.StringVar(&o.Source, "source", image.DefaultSource, "source repository label")
	fs.StringVar(&o.Licenses, "licenses", image.DefaultLicenses, "SPDX licence expression label")
	name := fs.String("name", image.DefaultName, "repository recorded in the layout")
	out := fs.String("o", "nat464-sidecar-oci.tar", "output OCI layout tarball")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Binary == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("want -binary PATH and no other arguments")
	}
	created, err := image.SourceDateEpoch(getenv)
	if err != nil {
		return err
	}
	o.Created = created
	img, err := image.Build(o)
	if err != nil {
		return err
	}
	ref := image.Ref(*name, o.Version)
	if err := image.WriteOCIArchive(*out, img, ref, created); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s@%s\n", *out, ref, digest)
	return nil
}
