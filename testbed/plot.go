package testbed

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// plotLead is how many warm-up seconds a plot shows before the scenario.
const plotLead = 5

// plotColors tell the policies of one plot apart (Okabe–Ito, colour-blind safe).
var plotColors = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

// WritePlot draws reports of one app and scenario as an SVG time series:
// goodput per second on top, with the capacity share dashed, and p99 per
// second (log scale) below, one line per report. The x axis is seconds
// from the start of the scenario proper, with the last 5 s of the warm-up.
func WritePlot(w io.Writer, title string, reports []Report) error {
	const (
		width, height     = 900, 620
		left, right       = 70, 150
		top, gap, panelH  = 40, 60, 230
		plotW             = width - left - right
		minP99, maxP99Cap = 1.0, 1e5
	)
	if len(reports) == 0 {
		return fmt.Errorf("testbed: WritePlot: no reports")
	}
	first := reports[0]
	lead := min(plotLead, int(first.WarmupS))
	from, to := -lead, int(first.DurationS)
	x := func(t float64) float64 { return left + (t-float64(from))/float64(to-from)*plotW }

	var maxGoodput, maxP99 float64
	for _, r := range reports {
		for _, s := range r.Seconds {
			if s.T < from || s.T >= to {
				continue
			}
			maxGoodput = math.Max(maxGoodput, math.Max(float64(s.Goodput), s.CapacityRPS))
			maxP99 = math.Max(maxP99, s.P99Ms)
		}
	}
	maxGoodput = niceCeil(math.Max(maxGoodput, 1))
	maxP99 = math.Min(math.Pow(10, math.Ceil(math.Log10(math.Max(maxP99, 10)))), maxP99Cap)
	yGoodput := func(v float64) float64 { return top + panelH - v/maxGoodput*panelH }
	top2 := float64(top + panelH + gap)
	yP99 := func(v float64) float64 {
		v = math.Min(math.Max(v, minP99), maxP99)
		return top2 + panelH - math.Log10(v/minP99)/math.Log10(maxP99/minP99)*panelH
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))

	// Axes, grids and labels.
	panel := func(y0 float64, label string) {
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", left, y0, plotW, panelH)
		fmt.Fprintf(&b, `<text x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>`+"\n", y0+panelH/2, y0+panelH/2, label)
		for t := from; t <= to; t++ {
			if t%10 != 0 {
				continue
			}
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x(float64(t)), x(float64(t)), y0, y0+panelH)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", x(float64(t)), y0+panelH+15, t)
		}
		if from < 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="4 3"/>`+"\n", x(0), x(0), y0, y0+panelH)
		}
	}
	panel(top, "goodput (req/s)")
	for i := 0; i <= 4; i++ {
		v := maxGoodput * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left-5, yGoodput(v)+4, v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", left, left+plotW, yGoodput(v), yGoodput(v))
	}
	panel(top2, "p99 latency (ms, log)")
	for v := minP99; v <= maxP99; v *= 10 {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left-5, yP99(v)+4, v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", left, left+plotW, yP99(v), yP99(v))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">seconds from the start of the scenario (warm-up before 0)</text>`+"\n", left+plotW/2.0, height-8)

	// Capacity share, from the first report: the same for every policy.
	var capacity []string
	for _, s := range first.Seconds {
		if s.T >= from && s.T < to {
			capacity = append(capacity, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x(float64(s.T)), yGoodput(s.CapacityRPS), x(float64(s.T+1)), yGoodput(s.CapacityRPS)))
		}
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#444" stroke-dasharray="6 4"/>`+"\n", strings.Join(capacity, " "))

	for i, r := range reports {
		color := plotColors[i%len(plotColors)]
		var goodput, p99 []string
		for _, s := range r.Seconds {
			if s.T < from || s.T >= to {
				continue
			}
			mid := x(float64(s.T) + 0.5)
			goodput = append(goodput, fmt.Sprintf("%.1f,%.1f", mid, yGoodput(float64(s.Goodput))))
			p99 = append(p99, fmt.Sprintf("%.1f,%.1f", mid, yP99(s.P99Ms)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.6"/>`+"\n", strings.Join(goodput, " "), color)
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.6"/>`+"\n", strings.Join(p99, " "), color)
		ly := top + 10 + 20*i
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", left+plotW+12, left+plotW+32, ly, ly, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+plotW+38, ly+4, html.EscapeString(r.Policy))
	}
	ly := top + 10 + 20*len(reports)
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#444" stroke-dasharray="6 4"/>`+"\n", left+plotW+12, left+plotW+32, ly, ly)
	fmt.Fprintf(&b, `<text x="%d" y="%d">capacity</text>`+"\n", left+plotW+38, ly+4)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
