package main

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

// palette colours the tools, in order of appearance; chute's come first.
var palette = []string{"#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"}

// svgDoc accumulates SVG elements.
type svgDoc struct {
	b    strings.Builder
	w, h float64
}

func newSVG(w, h float64) *svgDoc {
	d := &svgDoc{w: w, h: h}
	fmt.Fprintf(&d.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&d.b, `<rect x="0" y="0" width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", w, h)
	return d
}

func (d *svgDoc) text(x, y float64, anchor, style, s string) {
	fmt.Fprintf(&d.b, `<text x="%.1f" y="%.1f" text-anchor="%s"%s>%s</text>`+"\n", x, y, anchor, style, html.EscapeString(s))
}

func (d *svgDoc) line(x1, y1, x2, y2 float64, stroke string, width float64, dash string) {
	extra := ""
	if dash != "" {
		extra = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	fmt.Fprintf(&d.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s/>`+"\n", x1, y1, x2, y2, stroke, width, extra)
}

func (d *svgDoc) polyline(pts [][2]float64, stroke string, width float64, dash string) {
	if len(pts) < 2 {
		return
	}
	var s []string
	for _, p := range pts {
		s = append(s, fmt.Sprintf("%.1f,%.1f", p[0], p[1]))
	}
	extra := ""
	if dash != "" {
		extra = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	fmt.Fprintf(&d.b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%.1f"%s/>`+"\n", strings.Join(s, " "), stroke, width, extra)
}

func (d *svgDoc) circle(x, y, r float64, stroke string, filled bool) {
	fill := "#ffffff"
	if filled {
		fill = stroke
	}
	fmt.Fprintf(&d.b, `<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s" stroke="%s" stroke-width="1.5"/>`+"\n", x, y, r, fill, stroke)
}

func (d *svgDoc) rect(x, y, w, h float64, fill string) {
	fmt.Fprintf(&d.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y, w, h, fill)
}

func (d *svgDoc) String() string { return d.b.String() + "</svg>\n" }

// panel is one plot area.
type panel struct {
	x, y, w, h   float64
	ymax         float64
	xmin, xmax   float64
	categoricalN int // >0: x positions are 0..N-1, evenly spaced
}

func (p panel) px(v float64) float64 {
	if p.categoricalN > 0 {
		if p.categoricalN == 1 {
			return p.x + p.w/2
		}
		return p.x + 20 + v*(p.w-40)/float64(p.categoricalN-1)
	}
	return p.x + (v-p.xmin)/(p.xmax-p.xmin)*p.w
}

func (p panel) py(v float64) float64 {
	v = math.Max(0, math.Min(v, p.ymax))
	return p.y + p.h - v/p.ymax*p.h
}

// frame draws the axes, horizontal grid lines and y labels.
func (d *svgDoc) frame(p panel, title string, yStep float64, yLabels bool) {
	d.rect(p.x, p.y, p.w, p.h, "#fafafa")
	for v := 0.0; v <= p.ymax+1e-9; v += yStep {
		y := p.py(v)
		d.line(p.x, y, p.x+p.w, y, "#e0e0e0", 1, "")
		if yLabels {
			d.text(p.x-6, y+4, "end", "", fmt.Sprintf("%.0f", v))
		}
	}
	d.line(p.x, p.y+p.h, p.x+p.w, p.y+p.h, "#555555", 1, "")
	d.line(p.x, p.y, p.x, p.y+p.h, "#555555", 1, "")
	d.text(p.x+p.w/2, p.y-8, "middle", ` font-weight="bold"`, title)
}

// niceStep picks a grid step giving about five lines up to max.
func niceStep(max float64) float64 {
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// wanDirection maps an operation to the chart row it belongs in.
func wanDirection(op string) string {
	switch op {
	case "upload", "write":
		return "upload"
	case "download", "read":
		return "download"
	}
	return ""
}

// wanChart draws goodput against RTT: a panel per loss rate (columns)
// and direction (rows), a line per tool.
func wanChart(rep *wanReport) string {
	var tools []string
	seen := map[string]bool{}
	for _, s := range rep.series() {
		if !seen[s.Tool] {
			seen[s.Tool] = true
			tools = append(tools, s.Tool)
		}
	}
	cols := len(rep.Losses)
	pw, ph := 250.0, 200.0
	top, gapX, gapY := 130.0, 40.0, 70.0
	block := float64(cols)*pw + float64(cols-1)*gapX
	width := math.Max(block+100, 900)
	left := (width-block)/2 + 20
	height := top + 2*ph + gapY + 60
	d := newSVG(width, height)
	d.text(width/2, 24, "middle", ` font-size="16" font-weight="bold"`,
		fmt.Sprintf("Goodput of one %s transfer over a %s link, by round-trip time and random loss", humanBytes(rep.Size), rateText(rep.Rate)))
	d.text(width/2, 44, "middle", ` fill="#555555"`,
		fmt.Sprintf("TCP tools with %s congestion control. Dashed: the link rate. Hollow markers: stopped after %.0f s", rep.CC, rep.Timeout))
	d.text(width/2, 60, "middle", ` fill="#555555"`, "(an upper bound; for curl, the rate it had reached).")
	// Legend.
	lx, ly := left, 88.0
	for i, t := range tools {
		c := palette[i%len(palette)]
		if lx+150 > width {
			lx, ly = left, ly+18
		}
		d.line(lx, ly-4, lx+22, ly-4, c, 2.5, "")
		d.circle(lx+11, ly-4, 3.5, c, true)
		d.text(lx+28, ly, "start", "", t)
		lx += 34 + float64(len(t))*6.8
	}
	ymax := rep.RateMbps * 1.1
	step := niceStep(ymax)
	for row, dir := range []string{"upload", "download"} {
		for col, loss := range rep.Losses {
			p := panel{x: left + float64(col)*(pw+gapX), y: top + float64(row)*(ph+gapY), w: pw, h: ph, ymax: ymax, categoricalN: len(rep.RTTs)}
			d.frame(p, fmt.Sprintf("%s, loss %s", dir, pct(loss)), step, col == 0)
			d.line(p.x, p.py(rep.RateMbps), p.x+p.w, p.py(rep.RateMbps), "#888888", 1, "5,4")
			for i, rtt := range rep.RTTs {
				d.text(p.px(float64(i)), p.y+p.h+16, "middle", "", fmt.Sprintf("%.0f", rtt))
			}
			d.text(p.x+p.w/2, p.y+p.h+34, "middle", ` fill="#555555"`, "RTT (ms)")
			if col == 0 {
				fmt.Fprintf(&d.b, `<text x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(-90 %.1f %.1f)" fill="#555555">Mbit/s</text>`+"\n",
					p.x-46, p.y+p.h/2, p.x-46, p.y+p.h/2)
			}
			for ti, t := range tools {
				c := palette[ti%len(palette)]
				var pts [][2]float64
				type mark struct {
					x, y   float64
					filled bool
				}
				var marks []mark
				for i, rtt := range rep.RTTs {
					m, ok := findDir(rep, t, dir, rtt, loss)
					if !ok || (m.Error != "" && !m.TimedOut) {
						continue
					}
					x, y := p.px(float64(i)), p.py(m.Mbps)
					pts = append(pts, [2]float64{x, y})
					marks = append(marks, mark{x, y, !m.TimedOut})
				}
				d.polyline(pts, c, 2, "")
				for _, mk := range marks {
					d.circle(mk.x, mk.y, 3.5, c, mk.filled)
				}
			}
		}
	}
	return d.String()
}

// findDir finds tool's measurement in direction dir at one cell.
func findDir(rep *wanReport, tool, dir string, rtt, loss float64) (measurement, bool) {
	for _, c := range rep.Cells {
		if c.RTTms != rtt || c.Loss != loss {
			continue
		}
		for _, m := range c.Results {
			if m.Tool == tool && wanDirection(m.Op) == dir {
				return m, true
			}
		}
	}
	return measurement{}, false
}

// redrawChart rewrites the WAN chart from a saved wan-*.json.
func redrawChart(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var rep wanReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(wanChart(&rep)), 0o644)
}

// fairChart draws each fairness run: chute's and TCP's goodput over time.
func fairChart(rep *fairReport) string {
	n := len(rep.Runs)
	pw, ph := 420.0, 220.0
	left, top, gap := 70.0, 90.0, 50.0
	width := left + float64(max(n, 1))*pw + float64(max(n-1, 0))*gap + 30
	height := top + ph + 60
	d := newSVG(width, height)
	d.text(width/2, 24, "middle", ` font-size="16" font-weight="bold"`,
		fmt.Sprintf("chute and one TCP flow sharing a %s, %.0f ms bottleneck", rateText(rep.Rate), rep.RTTms))
	d.text(width/2, 42, "middle", ` fill="#555555"`, "goodput per second; shaded: while the TCP flow runs; dashed: the link rate")
	d.line(left, 62, left+22, 62, palette[0], 2.5, "")
	d.text(left+28, 66, "start", "", "chute cp")
	d.line(left+110, 62, left+132, 62, palette[2], 2.5, "")
	d.text(left+138, 66, "start", "", "TCP (iperf3)")
	ymax := rep.RateMbps * 1.1
	step := niceStep(ymax)
	for i, r := range rep.Runs {
		tmax := float64(len(r.Samples))
		p := panel{x: left + float64(i)*(pw+gap), y: top, w: pw, h: ph, ymax: ymax, xmin: 0, xmax: math.Max(tmax, 1)}
		var t0, t1 float64 = -1, -1
		for _, s := range r.Samples {
			if s.HasTCP {
				if t0 < 0 {
					t0 = s.T - 1
				}
				t1 = s.T
			}
		}
		if t0 >= 0 {
			d.rect(p.px(t0), p.y, p.px(t1)-p.px(t0), p.h, "#eef3fb")
		}
		d.frame(p, fmt.Sprintf("--policy %s against TCP %s: TCP got %.0f%%", r.Policy, r.CC, r.TCPShare*100), step, i == 0)
		d.line(p.x, p.py(rep.RateMbps), p.x+p.w, p.py(rep.RateMbps), "#888888", 1, "5,4")
		tstep := niceStep(tmax)
		for t := 0.0; t <= tmax+1e-9; t += tstep {
			d.text(p.px(t), p.y+p.h+16, "middle", "", fmt.Sprintf("%.0f", t))
		}
		d.text(p.x+p.w/2, p.y+p.h+34, "middle", ` fill="#555555"`, "seconds")
		var cp, tp [][2]float64
		for _, s := range r.Samples {
			if s.HasChute {
				cp = append(cp, [2]float64{p.px(s.T - 0.5), p.py(s.Chute)})
			}
			if s.HasTCP {
				tp = append(tp, [2]float64{p.px(s.T - 0.5), p.py(s.TCP)})
			}
		}
		d.polyline(cp, palette[0], 2, "")
		d.polyline(tp, palette[2], 2, "")
	}
	return d.String()
}
