package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The monitoring files. rulesFile is generated from prometheusRuleFile's spec by
// TestRulesFileGenerated (NAT464_UPDATE_GOLDEN=1 rewrites it), so the alerts exist once.
const (
	monitoringDir      = "monitoring"
	prometheusRuleFile = "monitoring/prometheusrule.yaml"
	rulesFile          = "monitoring/nat464-sidecar.rules.yaml"
	alertsTestFile     = "monitoring/alerts_test.yaml"
	dashboardFile      = "monitoring/nat464-sidecar.json"
	operationsDoc      = "../docs/operations.md"
)

// prometheusRule is a monitoring.coreos.com/v1 PrometheusRule, as much of it as we write.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec ruleGroups `json:"spec"`
}

// ruleGroups is a Prometheus rules file, which is also a PrometheusRule's spec.
type ruleGroups struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// loadPrometheusRule decodes prometheusRuleFile strictly.
func loadPrometheusRule(t *testing.T) *prometheusRule {
	t.Helper()
	data, err := readFile(".", prometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	pr := &prometheusRule{}
	if err := yaml.UnmarshalStrict(data, pr); err != nil {
		t.Fatalf("%s: strict decode: %v", prometheusRuleFile, err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Fatalf("%s: apiVersion %q kind %q name %q, want a named monitoring.coreos.com/v1 PrometheusRule",
			prometheusRuleFile, pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	return pr
}

// alerts returns every alerting rule of the PrometheusRule.
func (pr *prometheusRule) alerts() []rule {
	var out []rule
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// rulesFileText is the plain Prometheus rules file for pr: its spec, behind a header.
func rulesFileText(pr *prometheusRule) ([]byte, error) {
	body, err := yaml.Marshal(pr.Spec)
	if err != nil {
		return nil, err
	}
	head := "# Generated from prometheusrule.yaml's spec by TestRulesFileGenerated (deploy/monitoring_test.go);\n" +
		"# edit that file, then run NAT464_UPDATE_GOLDEN=1 go test -run TestRulesFileGenerated in deploy/.\n" +
		"# For a Prometheus without the operator: rule_files: [nat464-sidecar.rules.yaml]\n"
	return append([]byte(head), body...), nil
}

// TestRulesFileGenerated keeps rulesFile equal to the PrometheusRule's spec.
func TestRulesFileGenerated(t *testing.T) {
	want, err := rulesFileText(loadPrometheusRule(t))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("NAT464_UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(rulesFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: NAT464_UPDATE_GOLDEN=1 go test -run TestRulesFileGenerated rewrites it from %s", rulesFile, prometheusRuleFile)
	}
}

// runbookURL is where every alert's runbook_url points: the heading named after the alert in
// docs/operations.md ("#### Nat464Foo" has the anchor "nat464foo").
const runbookURL = "https://github.com/nat464/nat464-sidecar/blob/main/docs/operations.md#"

// TestAlertRules holds every alert to the house shape: a for: duration, a severity, a summary
// and a description, and a runbook_url whose anchor is a heading of docs/operations.md.
func TestAlertRules(t *testing.T) {
	alerts := loadPrometheusRule(t).alerts()
	if len(alerts) < 6 {
		t.Fatalf("%d alerts, want at least 6", len(alerts))
	}
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(doc))
	seen := map[string]bool{}
	for _, a := range alerts {
		if seen[a.Alert] {
			t.Errorf("alert %s defined twice", a.Alert)
		}
		seen[a.Alert] = true
		if !regexp.MustCompile(`^Nat464[A-Z][A-Za-z0-9]+$`).MatchString(a.Alert) {
			t.Errorf("alert %q: want a Nat464CamelCase name", a.Alert)
		}
		if !regexp.MustCompile(`^[0-9]+[smh]$`).MatchString(a.For) {
			t.Errorf("alert %s: for %q, want a duration", a.Alert, a.For)
		}
		if s := a.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("alert %s: severity %q, want warning or critical", a.Alert, s)
		}
		for _, k := range []string{"summary", "description"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("alert %s: no %s", a.Alert, k)
			}
		}
		u := a.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(u, runbookURL)
		if !ok || anchor != strings.ToLower(a.Alert) || !anchors[anchor] {
			t.Errorf("alert %s: runbook_url %q, want %s%s and that heading in %s", a.Alert, u, runbookURL, strings.ToLower(a.Alert), operationsDoc)
		}
	}
}

// markdownAnchors returns the anchors GitHub gives the headings of a Markdown text.
func markdownAnchors(doc string) map[string]bool {
	out := map[string]bool{}
	drop := regexp.MustCompile("[^a-z0-9 _-]")
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		out[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return out
}

// promtoolTests is the part of a promtool unit-test file this test reads.
type promtoolTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestAlertsUnitTestCoverage wants alerts_test.yaml to test the generated rules file, and
// every alert in it both firing and not firing.
func TestAlertsUnitTestCoverage(t *testing.T) {
	data, err := readFile(".", alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var pt promtoolTests
	if err := yaml.Unmarshal(data, &pt); err != nil {
		t.Fatalf("%s: %v", alertsTestFile, err)
	}
	if !slices.Equal(pt.RuleFiles, []string{filepath.Base(rulesFile)}) {
		t.Errorf("%s: rule_files %v, want [%s]", alertsTestFile, pt.RuleFiles, filepath.Base(rulesFile))
	}
	firing, quiet := map[string]int{}, map[string]int{}
	for _, tc := range pt.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname]++
			} else {
				quiet[a.Alertname]++
			}
		}
	}
	for _, a := range loadPrometheusRule(t).alerts() {
		if firing[a.Alert] == 0 || quiet[a.Alert] == 0 {
			t.Errorf("%s: alert %s has %d firing and %d non-firing cases, want at least one of each",
				alertsTestFile, a.Alert, firing[a.Alert], quiet[a.Alert])
		}
	}
}

// TestPromtool runs Prometheus's own checker on the rules generated from the PrometheusRule
// and its rule unit tests (alerts_test.yaml). It needs promtool (Debian package prometheus).
func TestPromtool(t *testing.T) {
	promtool := needTool(t, "promtool", "apt-get install --no-install-recommends prometheus")
	text, err := rulesFileText(loadPrometheusRule(t))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := readFile(".", alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rules := filepath.Join(dir, filepath.Base(rulesFile))
	if err := os.WriteFile(rules, text, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(alertsTestFile)), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(rulesFile)},
		{"test", "rules", filepath.Base(alertsTestFile)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

// needTool returns the path of a program the test needs. Where it is missing the test is
// skipped, loudly, except under CI=true, where .ci/run installs it and a skip would hide a
// check that did not run.
func needTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (%s): this test did NOT run", name, install)
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: %s", msg)
	}
	t.Skip("SKIP: " + msg)
	return ""
}
