package deploy

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// injectorLabel and injectorName mark the injector's own pods and Service (deploy/injector).
const injectorLabel, injectorName = "app.kubernetes.io/name", "nat464-injector"

// checkSet runs every check over a set of objects that are deployed together (one directory, or
// one kustomize build): each pod spec, each Service against the pods it selects, each Namespace.
func checkSet(objs []object, twins map[string]bool) (issues, int) {
	var is issues
	pods, svcs := podsAndServices(objs)
	sidecars := map[int]sidecar{}
	for i, p := range pods {
		checkPodSecurity(p.meta, p.spec, &is)
		if p.labels[injectorLabel] == injectorName {
			continue // the injector itself runs no sidecar (TestInjector tests what it injects)
		}
		c := findSidecar(p.spec, &is)
		if c == nil {
			continue
		}
		cfg := parseSidecar(c, twins, &is)
		if cfg == nil {
			continue
		}
		sc := sidecar{c: c, cfg: cfg}
		sidecars[i] = sc
		checkProbes(sc, &is)
		checkGrace(p.spec, sc, &is)
		checkInbound(p.spec, sc, &is)
		checkAppProbes(p.spec, sc, &is)
		if cfg.EgressPolicy != "" {
			checkEgressPolicy(objs, sc, p.spec, &is)
		}
		if cfg.DNSListen.IsValid() {
			checkTransparent(p.spec, sc, &is)
		} else {
			checkAppEnv(p.spec, sc, &is)
		}
	}
	for _, s := range svcs {
		if s.Spec.Selector[injectorLabel] == injectorName {
			continue
		}
		checkService(s, pods, sidecars, &is)
	}
	for _, o := range objs {
		if ns, ok := o.obj.(*corev1.Namespace); ok && ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			is.add("namespace", "namespace %q does not enforce the restricted Pod Security Standard", ns.Name)
		}
	}
	return is, len(pods)
}

// checkService wants an IPv6 single-stack Service whose every targetPort is an inbound listen
// port of the sidecar in the pods it selects.
func checkService(s *corev1.Service, pods []podTemplate, sidecars map[int]sidecar, is *issues) {
	if s.Spec.IPFamilyPolicy == nil || *s.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack ||
		!slices.Equal(s.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv6Protocol}) {
		is.add("service", "service %q: want ipFamilyPolicy SingleStack and ipFamilies [IPv6]", s.Name)
	}
	if len(s.Spec.Selector) == 0 {
		is.add("service", "service %q has no selector", s.Name)
		return
	}
	sel := labels.SelectorFromSet(s.Spec.Selector)
	matched := 0
	for i, p := range pods {
		if p.namespace != s.Namespace || !sel.Matches(labels.Set(p.labels)) {
			continue
		}
		matched++
		sc, ok := sidecars[i]
		if !ok {
			continue // the pod's own issues say why
		}
		for _, sp := range s.Spec.Ports {
			port, ok := portOf(sp.TargetPort, sc.c)
			if sp.TargetPort.IntValue() == 0 && sp.TargetPort.StrVal == "" {
				port, ok = int(sp.Port), true // targetPort defaults to port
			}
			if !ok || !sc.inboundPort(port) {
				is.add("service", "service %q port %q: targetPort %s is not an --inbound listen port of %s",
					s.Name, sp.Name, sp.TargetPort.String(), p.src)
			}
		}
	}
	if matched == 0 {
		is.add("service", "service %q selects no pod of this set", s.Name)
	}
}

// TestManifests decodes every YAML document under deploy/ strictly, checks every kustomization's
// references, renders every kustomization, and runs every check on each directory and render.
func TestManifests(t *testing.T) {
	sets := manifestSets(t, ".")
	twins := flagTwins()
	totalPods := 0
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		t.Run(name, func(t *testing.T) {
			is, pods := checkSet(sets[name], twins)
			totalPods += pods
			for _, i := range is {
				t.Error(i)
			}
		})
	}
	// base, its render, the overlay's render and the Pod example.
	if totalPods < 4 {
		t.Errorf("checked %d pod specs, want at least 4: are manifests missing?", totalPods)
	}
}

// manifestSets decodes every YAML document under root strictly, checks every kustomization's
// references and patches, and renders every kustomization. It returns the sets of objects
// deployed together: each directory's plain files (less those of a directory whose
// kustomization lists components, which only make sense rendered) and each render, named
// "DIR (kustomize build)".
func manifestSets(t *testing.T, root string) map[string][]object {
	t.Helper()
	files, err := yamlFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	patches := map[string]bool{}
	// inputs are directories whose kustomization lists components: their own resources lack
	// what the components add (an existing app before the sidecar), so only the render is checked.
	inputs := map[string]bool{}
	var kdirs []string
	for _, f := range files {
		if !isKustomization(f) {
			continue
		}
		if !isComponent(root, f) {
			kdirs = append(kdirs, filepath.Dir(f))
		}
		if k, err := kustomization(root, f); err == nil && len(k.Components) > 0 {
			inputs[filepath.Dir(f)] = true
		}
		ps, err := checkKustomization(root, f)
		if err != nil {
			t.Error(err)
		}
		for _, p := range ps {
			patches[p] = true
		}
	}
	sets := map[string][]object{}
	for _, f := range files {
		if isKustomization(f) {
			continue
		}
		data, err := readFile(root, f)
		if err != nil {
			t.Fatal(err)
		}
		if patches[f] {
			if err := decodePatch(f, data); err != nil {
				t.Error(err)
			}
			continue
		}
		objs, err := decodeStrict(f, data)
		if err != nil {
			t.Error(err)
			continue
		}
		if !inputs[filepath.Dir(f)] {
			sets[filepath.Dir(f)] = append(sets[filepath.Dir(f)], objs...)
		}
	}
	for _, d := range kdirs {
		objs, err := render(root, d)
		if err != nil {
			t.Error(err)
			continue
		}
		sets[d+" (kustomize build)"] = objs
	}
	if len(kdirs) < 2 {
		t.Errorf("found %d kustomizations, want the base and at least one overlay", len(kdirs))
	}
	return sets
}
