package testum

import "strings"

// ParseLabelList reads a label selector "k=v,k2=v2"; every pair needs its '='.
func ParseLabelList(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, Invalid("label %q: want key=value", part)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "" {
			return nil, Invalid("label %q: the key is empty", part)
		}
		m[k] = v
	}
	return m, nil
}
