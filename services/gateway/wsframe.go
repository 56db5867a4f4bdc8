package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf8"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/bus"
)

// WebSocket frame opcodes (RFC 6455) the relay writes itself.
const (
	wsOpText   = 0x1
	wsOpBinary = 0x2
	wsOpPong   = 0xa
)

// wsBinHeader is the size of a binary-mode output frame's header: type
// (1 stdout, 2 stderr), then big-endian host index (4 bytes), attempt (4),
// seq (8, the stream sequence that since takes) and host_seq (8); the raw
// output bytes follow. The README and openapi.yaml describe the same.
const wsBinHeader = 1 + 4 + 4 + 8 + 8

// wsBinType is a binary frame's first byte for a transcript type, 0 for a
// type that travels as JSON text.
func wsBinType(t bus.Type) byte {
	switch t {
	case bus.TypeStdout:
		return 1
	case bus.TypeStderr:
		return 2
	}
	return 0
}

// appendFrame appends one unfragmented server frame (unmasked, as a server
// sends) of opcode op.
func appendFrame(b []byte, op byte, payload []byte) []byte {
	return append(appendFrameHeader(b, op, len(payload)), payload...)
}

// appendFrameHeader appends the header of a final, unmasked frame of
// opcode op with n bytes of payload.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// appendBinaryFrame appends a binary-mode output frame of o, whose stream
// sequence is seq.
func appendBinaryFrame(b []byte, o bus.OutputMsg, seq uint64) []byte {
	var h [wsBinHeader]byte
	h[0] = wsBinType(o.Type)
	binary.BigEndian.PutUint32(h[1:], uint32(o.Idx))
	binary.BigEndian.PutUint32(h[5:], uint32(o.Attempt))
	binary.BigEndian.PutUint64(h[9:], seq)
	binary.BigEndian.PutUint64(h[17:], uint64(o.Seq))
	b = appendFrameHeader(b, wsOpBinary, len(h)+len(o.Data))
	b = append(b, h[:]...)
	return append(b, o.Data...)
}

// appendJSONFrame appends m as one JSON text frame. HTML escaping is off:
// it would write every <, > and & of the output as six bytes, for no reader
// that needs it.
func appendJSONFrame(b []byte, scratch *bytes.Buffer, m apiclient.WSMessage) ([]byte, error) {
	if err := encodeJSON(scratch, m); err != nil {
		return b, err
	}
	return appendFrame(b, wsOpText, scratch.Bytes()), nil
}

// encodeJSON leaves m's JSON, without HTML escaping and without the
// encoder's newline, in scratch.
func encodeJSON(scratch *bytes.Buffer, m apiclient.WSMessage) error {
	scratch.Reset()
	enc := json.NewEncoder(scratch)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return err
	}
	scratch.Truncate(scratch.Len() - 1)
	return nil
}

// wsPayloadKey is how the empty payload of wsRenderHead's message reads in
// its JSON. A quote inside a JSON string is always escaped, so the only
// place this can occur is the payload's own key.
const wsPayloadKey = `"payload":""`

// wsMaxFrameHeader is the longest header of a server frame: 2 bytes and
// a 64-bit length.
const wsMaxFrameHeader = 10

// appendTranscriptFrame appends transcript message o, of stream sequence
// seq, as one JSON text frame: byte for byte appendJSONFrame of
// wsRender(o, seq), with the payload written straight into the frame (as
// base64 or as a JSON string) rather than copied into a string, escaped by
// encoding/json into its buffer and copied from there.
func appendTranscriptFrame(b []byte, scratch *bytes.Buffer, o bus.OutputMsg, seq uint64) ([]byte, error) {
	m := wsRenderHead(o, seq)
	if err := encodeJSON(scratch, m); err != nil {
		return b, err
	}
	head := scratch.Bytes()
	i := bytes.Index(head, []byte(wsPayloadKey))
	if i < 0 {
		return b, fmt.Errorf("websocket message without its payload key: %.200s", head)
	}
	i += len(wsPayloadKey) - 1 // before the closing quote
	// The frame's header goes in front once the length is known: room is
	// kept for the longest, and the message moved up when it is shorter.
	start := len(b)
	b = slices.Grow(b, wsMaxFrameHeader+len(head)+base64.StdEncoding.EncodedLen(len(o.Data)))[:start+wsMaxFrameHeader]
	b = append(b, head[:i]...)
	if m.Encoding != nil {
		b = base64.StdEncoding.AppendEncode(b, o.Data)
	} else {
		b = appendJSONText(b, o.Data)
	}
	b = append(b, head[i:]...)
	var h [wsMaxFrameHeader]byte
	hdr := appendFrameHeader(h[:0], wsOpText, len(b)-start-wsMaxFrameHeader)
	copy(b[start:], hdr)
	n := copy(b[start+len(hdr):], b[start+wsMaxFrameHeader:])
	return b[:start+len(hdr)+n], nil
}

// appendJSONText appends the inside of a JSON string of data as
// encoding/json writes it with HTML escaping off: \" and \\, the short
// escapes of \b \f \n \r \t, \u00XX for the other control bytes, \ufffd
// for each byte that is not UTF-8, and \u2028 and \u2029 escaped.
func appendJSONText(b, data []byte) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(data); {
		c := data[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, data[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, data[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, data[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(b, data[start:]...)
}
