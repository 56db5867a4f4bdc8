//go:build bench

package main

// The handshake window of the benchmark: testum's /metrics sampled while
// its executor dials the hosts of the largest fan-out run, to show the
// adaptive bound of SSH handshakes in flight over time.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
)

// windowEvery is the sampling interval of /metrics.
const windowEvery = 50 * time.Millisecond

// windowSample is one scrape of the handshake metrics.
type windowSample struct {
	at       time.Duration // since the sampling started
	window   float64       // testum_ssh_handshake_window
	inFlight float64       // testum_ssh_handshakes_in_flight
	retries  float64       // testum_ssh_handshake_retries_total
	resets   float64       // testum_ssh_handshake_failures_total{class="reset"}
}

// windowSampler scrapes /metrics of a serve every interval until stopped.
type windowSampler struct {
	quit chan struct{}
	done chan struct{}
	got  []windowSample
	err  error
}

// startWindowSampler starts sampling base's /metrics (with the metrics
// token) every interval; stop ends it. The sampling is bounded (15
// minutes) in case stop is never reached.
func startWindowSampler(base string, every time.Duration) *windowSampler {
	w := &windowSampler{quit: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(w.done)
		start := time.Now()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range int(15 * time.Minute / every) {
			s, err := scrapeWindow(client, base)
			if err != nil {
				w.err = err
				return
			}
			s.at = time.Since(start)
			w.got = append(w.got, s)
			select {
			case <-w.quit:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// stop ends the sampling and returns the samples.
func (w *windowSampler) stop() ([]windowSample, error) {
	close(w.quit)
	<-w.done
	return w.got, w.err
}

func scrapeWindow(client *http.Client, base string) (windowSample, error) {
	req, err := http.NewRequest("GET", base+"/metrics", nil)
	if err != nil {
		return windowSample{}, err
	}
	req.Header.Set("Authorization", "Bearer "+testMetricsToken)
	resp, err := client.Do(req)
	if err != nil {
		return windowSample{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return windowSample{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return windowSample{}, fmt.Errorf("GET /metrics: %d %.200s", resp.StatusCode, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return windowSample{}, fmt.Errorf("parsing /metrics: %w", err)
	}
	one := func(name string, label ...string) (float64, error) {
		f := fams[name]
		if f == nil {
			return 0, fmt.Errorf("/metrics has no %s", name)
		}
		for _, m := range f.GetMetric() {
			if len(label) == 2 && !hasLabel(m, label[0], label[1]) {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue(), nil
			}
			return m.GetCounter().GetValue(), nil
		}
		return 0, nil // a labelled counter not incremented yet
	}
	var s windowSample
	for _, v := range []struct {
		to    *float64
		name  string
		label []string
	}{
		{&s.window, "testum_ssh_handshake_window", nil},
		{&s.inFlight, "testum_ssh_handshakes_in_flight", nil},
		{&s.retries, "testum_ssh_handshake_retries_total", nil},
		{&s.resets, "testum_ssh_handshake_failures_total", []string{"class", "reset"}},
	} {
		x, err := one(v.name, v.label...)
		if err != nil && v.label == nil {
			return s, err
		}
		*v.to = x
	}
	return s, nil
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// windowRun is the handshake window over one testum run.
type windowRun struct {
	n       int
	wall    time.Duration
	lost    int
	retried int // hosts whose connection took more than one dial
	samples []windowSample
	err     error
}

// markdown is the report's handshake-window section ("" when not sampled).
func (w windowRun) markdown() string {
	if w.n == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Handshake window at N=%d\n\n", w.n)
	if w.err != nil || len(w.samples) < 2 {
		fmt.Fprintf(&b, "Sampling testum's /metrics failed: %v (%d samples).\n\n", w.err, len(w.samples))
		return b.String()
	}
	var win, fly []float64
	for _, s := range w.samples {
		win, fly = append(win, s.window), append(fly, s.inFlight)
	}
	first, last := w.samples[0], w.samples[len(w.samples)-1]
	fmt.Fprintf(&b, "testum's first `echo ok` run on %d hosts at parallelism %d (%.2f s, %d host(s) lost), its /metrics scraped "+
		"every %d ms meanwhile (%d samples; the scrapes are part of that run's time): the executor's adaptive bound of SSH "+
		"handshakes in flight (`testum_ssh_handshake_window`, at most `TESTUM_MAX_HANDSHAKES` = 64 here) was min %.0f, median %.0f, "+
		"max %.0f; handshakes in flight (`testum_ssh_handshakes_in_flight`) median %.0f, max %.0f; %.0f handshake(s) retried "+
		"(`testum_ssh_handshake_retries_total`) and %.0f reset by the server during the run; %d host(s) took more than one dial "+
		"(the hosts' `connect_attempts`).\n\n",
		w.n, w.n, w.wall.Seconds(), w.lost, windowEvery.Milliseconds(), len(w.samples), slices.Min(win), medianOf(win), slices.Max(win),
		medianOf(fly), slices.Max(fly), last.retries-first.retries, last.resets-first.resets, w.retried)
	b.WriteString("| t ms | window | in flight | retries | resets |\n|---|---|---|---|---|\n")
	const rows = 12
	for i := range rows {
		s := w.samples[i*(len(w.samples)-1)/(rows-1)]
		fmt.Fprintf(&b, "| %.0f | %.0f | %.0f | %.0f | %.0f |\n", ms(s.at), s.window, s.inFlight, s.retries-first.retries, s.resets-first.resets)
		if len(w.samples) < rows && i == len(w.samples)-1 {
			break
		}
	}
	b.WriteString("\n")
	return b.String()
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// plot is the window and the handshakes in flight against time, or nil
// when there are no samples.
func (w windowRun) plot() *plot.Plot {
	if w.err != nil || len(w.samples) < 2 {
		return nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("testum handshakes, N=%d", w.n)
	p.X.Label.Text = "seconds into the run"
	p.Y.Label.Text = "handshakes"
	p.Legend.Left = true // bottom left: the window runs along the top
	var win, fly plotter.XYs
	for _, s := range w.samples {
		win = append(win, plotter.XY{X: s.at.Seconds(), Y: s.window})
		fly = append(fly, plotter.XY{X: s.at.Seconds(), Y: s.inFlight})
	}
	if err := plotutil.AddLines(p, "window", win, "in flight", fly); err != nil {
		return nil
	}
	p.Y.Min, p.Y.Max = 0, p.Y.Max*1.1
	return p
}
