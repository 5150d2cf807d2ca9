package main

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writePlots renders the SVG plots into dir and returns their file names.
func writePlots(dir string, res *Results) ([]string, error) {
	var names []string
	save := func(name string, p *plot.Plot, h vg.Length) error {
		if p == nil {
			return nil
		}
		if err := p.Save(8*vg.Inch, h, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("bench: plot %s: %w", name, err)
		}
		names = append(names, name)
		return nil
	}
	for _, fam := range families {
		p, err := latencyCDF(res, fam)
		if err != nil {
			return names, err
		}
		if err := save("latency-cdf-"+fam+".svg", p, 4.5*vg.Inch); err != nil {
			return names, err
		}
	}
	workers := func(n int) string { return fmt.Sprintf("%d workers", n) }
	bars := []struct {
		file, title, unit string
		series            []barSeries
	}{
		{"conn-rate.svg", "Connection rate", "connections/s", []barSeries{
			{workers(res.Plan.Workers), TestRate, mRate}, {workers(res.Plan.Workers32), TestRate32, mRate}}},
		{"bulk-throughput.svg", "Bulk throughput", "Gbit/s", []barSeries{{"up", TestBulk, mUp}, {"down", TestBulk, mDown}}},
		{"idle-memory.svg", "Memory per idle flow", "KiB per flow", []barSeries{{"RSS", TestIdle, mRSS}, {"PSS", TestIdle, mPSS}}},
	}
	for _, b := range bars {
		p, err := barPlot(res, b.title, b.unit, b.series)
		if err != nil {
			return names, err
		}
		rows := len(rowsFor(res, b.series[0].test, ""))
		if err := save(b.file, p, vg.Length(1.2+0.35*float64(rows))*vg.Inch); err != nil {
			return names, err
		}
	}
	return names, nil
}

// latencyCDF plots the first latency run of direct and each contender of a
// family on a log time axis.
func latencyCDF(res *Results, fam string) (*plot.Plot, error) {
	rows := rowsFor(res, TestLatency, fam)
	if len(rows) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Latency CDF, 1 worker (" + fam + ")"
	p.X.Label.Text = "connect + 64 B echo (us, log)"
	p.Y.Label.Text = "fraction of requests"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	for i, c := range rows {
		cdf := c.Tests[TestLatency][0].CDF
		if len(cdf) == 0 {
			continue
		}
		xys := make(plotter.XYs, 0, len(cdf))
		for _, pt := range cdf {
			xys = append(xys, plotter.XY{X: math.Max(pt.Nanos/1e3, 0.001), Y: pt.Fraction})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(c.Name, l)
	}
	return p, nil
}

// barSeries is one bar of each group: a metric of a test.
type barSeries struct {
	label string
	test  string
	m     func(Run) float64
}

// barPlot draws horizontal grouped bars: one group per contender that ran
// the first series' test, one bar per series, at the mean over reps.
func barPlot(res *Results, title, unit string, series []barSeries) (*plot.Plot, error) {
	rows := rowsFor(res, series[0].test, "")
	if len(rows) == 0 {
		return nil, nil
	}
	slices.Reverse(rows) // the first row (direct) at the top
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = unit
	p.X.Min = 0
	p.Add(plotter.NewGrid())
	names := make([]string, len(rows))
	w := vg.Points(18 / float64(len(series)))
	for si, s := range series {
		vals := make(plotter.Values, len(rows))
		for i, c := range rows {
			names[i] = c.Name
			st := statOf(c.Tests[s.test], s.m)
			if !math.IsNaN(st.Mean) {
				vals[i] = st.Mean
			}
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		b.Horizontal = true
		b.Color = plotutil.Color(si)
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(si)-float64(len(series)-1)/2)
		p.Add(b)
		if len(series) > 1 {
			p.Legend.Add(s.label, b)
		}
	}
	p.Legend.Top = true
	p.NominalY(names...)
	p.X.Max *= 1.08 // room for the legend
	return p, nil
}
