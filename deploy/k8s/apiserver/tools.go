//go:build tools

// Package tools pins k8s.io/kubernetes for building kube-apiserver (deploy/k8s/build.sh): the
// staging modules it replaces with ./staging in its own go.mod are pinned here to the release
// they were published as, so the module proxy serves them.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
