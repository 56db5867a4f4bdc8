package testum

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Amount is a count of hosts given absolutely ("10") or as a share of the
// run's hosts ("25%"): rolling batch sizes and failure thresholds.
type Amount struct {
	Count     int
	Percent   float64
	IsPercent bool
}

// ParseAmount reads "10" or "25%" (0% to 100%).
func ParseAmount(s string) (Amount, error) {
	s = strings.TrimSpace(s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || math.IsNaN(v) {
			return Amount{}, fmt.Errorf("%q is not a percentage", s)
		}
		if v < 0 || v > 100 {
			return Amount{}, fmt.Errorf("%q: a percentage must be between 0%% and 100%%", s)
		}
		return Amount{Percent: v, IsPercent: true}, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return Amount{}, fmt.Errorf("%q: want a whole number or a percentage like \"25%%\"", s)
	}
	if v < 0 {
		return Amount{}, fmt.Errorf("%q: must not be negative", s)
	}
	return Amount{Count: v}, nil
}

// Of resolves the amount against a run of total hosts; a percentage rounds
// up, so "10%" of 5 hosts is 1.
func (a Amount) Of(total int) int {
	if !a.IsPercent {
		return a.Count
	}
	return int(math.Ceil(a.Percent * float64(total) / 100))
}

// String gives the amount back in the form it was written.
func (a Amount) String() string {
	if a.IsPercent {
		return strconv.FormatFloat(a.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(a.Count)
}
