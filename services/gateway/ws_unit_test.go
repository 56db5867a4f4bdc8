package gateway

import (
	"bytes"
	"strings"
	"testing"
)

func TestMostlyEscaped(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"text", []byte("hello world\n\tindented\r\n"), false},
		{"colours", []byte("\x1b[31mred\x1b[0m \x1b[1;32mgreen\x1b[0m\n"), false},
		{"progress bar", []byte("\r[#####     ] 50%\r[##########] 100%\n"), false},
		{"zeros", make([]byte, 4096), true},
		{"a few controls", []byte(strings.Repeat("a line of text\n", 20) + "\x07\x08"), false},
		{"mostly controls", bytes.Repeat([]byte{0x01, 'a', 0x02}, 100), true},
	} {
		if got := mostlyEscaped(tc.data); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
