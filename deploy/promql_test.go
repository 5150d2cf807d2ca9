package deploy

import (
	"fmt"
	"slices"
	"strings"
)

// promqlRefs is what an expression refers to, as far as the monitoring checks care.
type promqlRefs struct {
	metrics  []string            // series names, in order of appearance
	matchers map[string][]string // series name -> label names in its {…} selector
	grouping []string            // labels of by, without, on, ignoring, group_left, group_right
}

// PromQL's aggregations, functions and keywords: identifiers that are not series names.
var (
	promqlAggregations = wordSet("sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio")
	promqlFunctions    = wordSet("abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes " +
		"clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg " +
		"delta deriv double_exponential_smoothing exp floor histogram_avg histogram_count histogram_fraction " +
		"histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase info irate " +
		"label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month " +
		"pi predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort " +
		"sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh " +
		"time timestamp vector year")
	promqlGrouping = wordSet("by without on ignoring group_left group_right")
	promqlKeywords = wordSet("and or unless bool offset atan2 inf nan start end")
)

func wordSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

// parsePromQL tokenizes a PromQL expression (Grafana's $variables allowed) just enough to find
// the series names it reads and the labels it names. It is not a parser: it skips strings,
// range and subquery brackets, numbers and durations, and takes every other identifier that is
// not a keyword, an aggregation or a function call for a series name. A call of a function it
// does not know is an error, so a misspelt function is not taken for a metric.
func parsePromQL(expr string) (promqlRefs, error) {
	refs := promqlRefs{matchers: map[string][]string{}}
	s := expr
	last := "" // the series name just read, which a {…} selector belongs to
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return refs, err
			}
			i, last = j, ""
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return refs, fmt.Errorf("unclosed [ at %d", i)
			}
			i, last = i+j+1, ""
		case c == '{':
			if last == "" {
				return refs, fmt.Errorf("selector without a metric name at %d", i)
			}
			labels, j, err := selectorLabels(s, i)
			if err != nil {
				return refs, err
			}
			refs.matchers[last] = append(refs.matchers[last], labels...)
			i, last = j, ""
		case c == '$': // Grafana: $var, ${var}, $__rate_interval
			i++
			if i < len(s) && s[i] == '{' {
				j := strings.IndexByte(s[i:], '}')
				if j < 0 {
					return refs, fmt.Errorf("unclosed ${ at %d", i)
				}
				i += j + 1
			} else {
				i = identEnd(s, i)
			}
			last = ""
		case isDigit(c) || (c == '.' && i+1 < len(s) && isDigit(s[i+1])):
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				i++
			}
			last = ""
		case isIdentStart(c):
			j := identEnd(s, i)
			word := s[i:j]
			next := j
			for next < len(s) && (s[next] == ' ' || s[next] == '\t' || s[next] == '\n') {
				next++
			}
			call := next < len(s) && s[next] == '('
			i, last = j, ""
			switch {
			case promqlGrouping[word] && call:
				labels, k, err := labelList(s, next)
				if err != nil {
					return refs, err
				}
				refs.grouping = append(refs.grouping, labels...)
				i = k
			case promqlGrouping[word], promqlKeywords[word], promqlAggregations[word]:
			case call:
				if !promqlFunctions[word] {
					return refs, fmt.Errorf("unknown function %s()", word)
				}
			default:
				if !slices.Contains(refs.metrics, word) {
					refs.metrics = append(refs.metrics, word)
				}
				last = word
			}
		default:
			i, last = i+1, ""
		}
	}
	return refs, nil
}

// skipString returns the index just past the string literal starting at s[i].
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unclosed string at %d", i)
}

// selectorLabels reads {label op "value", ...} from s[i] == '{' and returns the label names
// and the index past the '}'.
func selectorLabels(s string, i int) ([]string, int, error) {
	var out []string
	i++
	for {
		i = skipSpace(s, i)
		if i < len(s) && s[i] == '}' {
			return out, i + 1, nil
		}
		if i >= len(s) || !isIdentStart(s[i]) {
			return nil, 0, fmt.Errorf("want a label name at %d", i)
		}
		j := identEnd(s, i)
		out = append(out, s[i:j])
		i = skipSpace(s, j)
		for i < len(s) && strings.IndexByte("=!~", s[i]) >= 0 {
			i++
		}
		i = skipSpace(s, i)
		if i >= len(s) || (s[i] != '"' && s[i] != '\'' && s[i] != '`') {
			return nil, 0, fmt.Errorf("want a label value at %d", i)
		}
		j, err := skipString(s, i)
		if err != nil {
			return nil, 0, err
		}
		i = skipSpace(s, j)
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
}

// labelList reads (a, b, ...) from s[i] == '(' and returns the names and the index past ')'.
func labelList(s string, i int) ([]string, int, error) {
	j := strings.IndexByte(s[i:], ')')
	if j < 0 {
		return nil, 0, fmt.Errorf("unclosed label list at %d", i)
	}
	var out []string
	for _, f := range strings.Split(s[i+1:i+j], ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out, i + j + 1, nil
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
		i++
	}
	return i
}

func identEnd(s string, i int) int {
	for i < len(s) && isIdentChar(s[i]) {
		i++
	}
	return i
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
