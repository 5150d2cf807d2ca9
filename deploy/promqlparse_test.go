package deploy

import (
	"reflect"
	"testing"
)

// TestParsePromQL pins what the tokenizer takes for series names and labels, and what it refuses.
func TestParsePromQL(t *testing.T) {
	for _, tc := range []struct {
		expr     string
		metrics  []string
		matchers map[string][]string
		grouping []string
		err      bool
	}{
		{expr: `up`, metrics: []string{"up"}},
		{expr: `sum by (kind) (rate(nat464_loop_flows_total{job=~"$job", kind!="x"}[$__rate_interval]))`,
			metrics: []string{"nat464_loop_flows_total"}, matchers: map[string][]string{"nat464_loop_flows_total": {"job", "kind"}},
			grouping: []string{"kind"}},
		{expr: `histogram_quantile(0.99, sum(rate(a_seconds_bucket[5m])) by (le))`,
			metrics: []string{"a_seconds_bucket"}, grouping: []string{"le"}},
		{expr: "(process_open_fds / process_max_fds > 0.9)\nand on (job, instance) nat464_build_info",
			metrics: []string{"process_open_fds", "process_max_fds", "nat464_build_info"}, grouping: []string{"job", "instance"}},
		{expr: `max_over_time(x{source="discovered (RFC 7050)"}[6h]) unless on (job) x offset 5m`,
			metrics: []string{"x"}, matchers: map[string][]string{"x": {"source"}}, grouping: []string{"job"}},
		{expr: `count_values("version", build_info) # a comment with words`, metrics: []string{"build_info"}},
		{expr: `a * on (i) group_left (version) b + 1e3 - .5`, metrics: []string{"a", "b"}, grouping: []string{"i", "version"}},
		{expr: `sum without (reason) (rate(d{reason=~"a|b"}[5m:1m])) > bool 0`,
			metrics: []string{"d"}, matchers: map[string][]string{"d": {"reason"}}, grouping: []string{"reason"}},
		{expr: `rat(x[5m])`, err: true},          // misspelt function
		{expr: `{__name__="x"}`, err: true},      // no metric name before the selector
		{expr: `x{job="a}`, err: true},           // unclosed string
		{expr: `rate(x[5m)`, err: true},          // unclosed range
		{expr: `x{job}`, err: true},              // matcher without a value
		{expr: `x{job="a"} by (kind`, err: true}, // unclosed label list
	} {
		refs, err := parsePromQL(tc.expr)
		if tc.err {
			if err == nil {
				t.Errorf("%q: no error, got %+v", tc.expr, refs)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if tc.matchers == nil {
			tc.matchers = map[string][]string{}
		}
		if !reflect.DeepEqual(refs.metrics, tc.metrics) || !reflect.DeepEqual(refs.matchers, tc.matchers) ||
			!reflect.DeepEqual(refs.grouping, tc.grouping) {
			t.Errorf("%q:\n got %v %v %v\nwant %v %v %v", tc.expr, refs.metrics, refs.matchers, refs.grouping,
				tc.metrics, tc.matchers, tc.grouping)
		}
	}
}
