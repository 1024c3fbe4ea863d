package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// group is the measurements of one tool and operation.
type group struct {
	Tool, Op string
	Ms       []measurement
}

// groupMeasurements groups ms by tool and operation, in order of first
// appearance.
func groupMeasurements(ms []measurement) []*group {
	var gs []*group
	idx := map[string]*group{}
	for _, m := range ms {
		k := m.Tool + "\x00" + m.Op
		g, ok := idx[k]
		if !ok {
			g = &group{Tool: m.Tool, Op: m.Op}
			idx[k] = g
			gs = append(gs, g)
		}
		g.Ms = append(g.Ms, m)
	}
	return gs
}

// ok returns the measurements that completed.
func (g *group) ok() []measurement {
	var out []measurement
	for _, m := range g.Ms {
		if m.Error == "" && !m.TimedOut {
			out = append(out, m)
		}
	}
	return out
}

// median returns the median of f over the completed measurements, and the
// smallest and largest value.
func (g *group) median(f func(measurement) float64) (med, lo, hi float64, n int) {
	var v []float64
	for _, m := range g.ok() {
		v = append(v, f(m))
	}
	if len(v) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(v)
	return quantile(v, 0.5), v[0], v[len(v)-1], len(v)
}

// quantile of sorted s, by linear interpolation between closest ranks.
func quantile(s []float64, q float64) float64 {
	pos := q * float64(len(s)-1)
	i := int(math.Floor(pos))
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}

// rateCell formats a group's goodput: "1234 Mbit/s (1100–1300)", or what
// went wrong.
func (g *group) rateCell() string {
	med, lo, hi, n := g.median(func(m measurement) float64 { return m.Mbps })
	if n == 0 {
		return g.failure()
	}
	s := mbps(med)
	if n > 1 && hi-lo > 0.005*med {
		s += fmt.Sprintf(" (%s–%s)", mbpsNum(lo), mbpsNum(hi))
	}
	if n < len(g.Ms) {
		s += fmt.Sprintf("; %d of %d failed", len(g.Ms)-n, len(g.Ms))
	}
	return s
}

// failure describes a group none of whose measurements completed.
func (g *group) failure() string {
	for _, m := range g.Ms {
		if m.TimedOut {
			return timeoutCell(m)
		}
	}
	if len(g.Ms) > 0 {
		return "failed: " + shorten(g.Ms[0].Error, 120)
	}
	return "–"
}

// timeoutCell formats a timed-out transfer: "< 35.8 Mbit/s (timed out
// after 60 s)", or, when the tool said how far it got, that rate.
func timeoutCell(m measurement) string {
	if m.Partial {
		return fmt.Sprintf("%s (timed out after %.0f s, %s moved)", mbps(m.Mbps), m.Seconds, humanBytes(m.Bytes))
	}
	return fmt.Sprintf("< %s (timed out after %.0f s)", mbps(m.Mbps), m.Seconds)
}

func mbps(v float64) string { return mbpsNum(v) + " Mbit/s" }

func mbpsNum(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func shorten(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// num formats a median with one decimal, or "–" when there is none.
func (g *group) num(f func(measurement) float64, format string) string {
	med, _, _, n := g.median(f)
	if n == 0 || med == 0 {
		return "–"
	}
	return fmt.Sprintf(format, med)
}

// table renders rows as a Markdown table.
func table(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
		if i > 0 {
			sep[i] = "--:"
		}
	}
	b.WriteString("|" + strings.Join(sep, "|") + "|\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// writeJSON writes v, indented, to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// stamp names a run's result files: 2026-11-25T2112.
func stamp(t time.Time) string { return t.Format("2006-01-02T1504") }

// saveResults writes a run's JSON and Markdown as prefix-<stamp>.* and
// prefix-latest.* in dir; it returns the dated JSON file's path.
func saveResults(dir, prefix string, t time.Time, v any, md string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(dir, prefix+"-"+stamp(t))
	for _, p := range []string{base, filepath.Join(dir, prefix+"-latest")} {
		if err := writeJSON(p+".json", v); err != nil {
			return "", err
		}
		if md != "" {
			if err := os.WriteFile(p+".md", []byte(md), 0o644); err != nil {
				return "", err
			}
		}
	}
	return base + ".json", nil
}

// metaSection describes a run's conditions in Markdown.
func metaSection(m *runMeta) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- Run: %s to %s, commit %s", m.Started, m.Finished, m.Commit)
	if m.Dirty {
		b.WriteString(" (with uncommitted changes in the tree)")
	}
	fmt.Fprintf(&b, "\n- Machine: %d cores (%s), %.0f GiB, Linux %s, %s\n", m.Cores, m.CPU, m.MemGiB, m.Kernel, m.GoVersion)
	fmt.Fprintf(&b, "- Load average (1 min): %.2f at the start, %.2f at the end; mean %.2f, max %.2f over the run",
		m.Load.Start[0], m.Load.End[0], m.Load.Mean, m.Load.Max)
	if m.Load.Max > 1.5 {
		b.WriteString(" — other work shared the machine: treat the figures as indicative")
	}
	b.WriteString("\n")
	var tools []string
	for _, k := range sortedKeys(m.Tools) {
		tools = append(tools, m.Tools[k])
	}
	if len(tools) > 0 {
		fmt.Fprintf(&b, "- Tools: %s\n", strings.Join(tools, "; "))
	}
	var set []string
	for _, k := range sortedKeys(m.Settings) {
		set = append(set, fmt.Sprintf("%s=%s", k, m.Settings[k]))
	}
	if len(set) > 0 {
		fmt.Fprintf(&b, "- Settings: `%s`\n", strings.Join(set, " "))
	}
	for _, n := range m.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

// replaceSection replaces the text between "<!-- begin NAME -->" and
// "<!-- end NAME -->" in doc (appending the markers when missing).
func replaceSection(doc, name, body string) string {
	begin, end := "<!-- begin "+name+" -->", "<!-- end "+name+" -->"
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n" + begin + "\n" + body + end + "\n"
	}
	return doc[:i+len(begin)] + "\n" + body + doc[j:]
}
