// Package deploy holds the Kubernetes side of nat464-sidecar: a Pod and a Deployment example that
// run the sidecar as a native sidecar (an init container with restartPolicy: Always), a kustomize
// base with an example overlay, and the tests that hold every manifest to the real flag parser,
// the probe paths the admin server serves, and the "restricted" Pod Security Standard.
//
// It is its own Go module so that the Kubernetes API types and go-containerregistry never reach
// the sidecar's go.mod. It has no Go API of its own: the YAML is the product. Package image and
// command cmd/mkimage build the container image without a Docker engine.
package deploy
