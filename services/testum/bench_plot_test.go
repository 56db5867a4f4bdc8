//go:build bench

package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotSeries is one tool's median seconds at each N of one command.
type plotSeries struct {
	name string
	secs map[int]time.Duration
}

// plotPanel is one command's chart.
type plotPanel struct {
	title  string
	series []plotSeries
}

// writePlot draws seconds against N, one line per tool, one panel per
// command, both axes logarithmic (the tools differ by an order of
// magnitude), then the extra panels that are not nil, into a PNG at path.
func writePlot(path string, sizes []int, panels []plotPanel, extra ...*plot.Plot) error {
	var row []*plot.Plot
	for _, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "hosts (N)"
		p.Y.Label.Text = "seconds (median)"
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker = plot.ConstantTicks(nTicks(sizes))
		p.Y.Tick.Marker = plot.TickerFunc(secondTicks)
		p.Legend.Top, p.Legend.Left = true, true
		var args []any
		for _, s := range pn.series {
			var xys plotter.XYs
			for _, n := range sizes {
				if d, ok := s.secs[n]; ok && d > 0 {
					xys = append(xys, plotter.XY{X: float64(n), Y: d.Seconds()})
				}
			}
			args = append(args, s.name, xys)
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return fmt.Errorf("plot %s: %w", pn.title, err)
		}
		row = append(row, p)
	}
	for _, p := range extra {
		if p != nil {
			row = append(row, p)
		}
	}
	const w, h = 6 * vg.Inch, 4.5 * vg.Inch
	img := vgimg.New(w*vg.Length(len(row)), h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(row), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{row}, tiles, dc)
	for i, p := range row {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("png %s: %w", path, err)
	}
	return f.Close()
}

func nTicks(sizes []int) []plot.Tick {
	var ts []plot.Tick
	for _, n := range sizes {
		ts = append(ts, plot.Tick{Value: float64(n), Label: fmt.Sprint(n)})
	}
	return ts
}

// secondTicks labels 1-2-5 steps: plain log ticks label only powers of ten,
// and a short range may hold one or none.
func secondTicks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for decade := 0.01; decade <= 1000; decade *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := m * decade; v >= lo && v <= hi {
				ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return ts
}
