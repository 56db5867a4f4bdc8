package gateway

import (
	"bytes"
	"encoding/binary"
	"encoding/json"

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
	scratch.Reset()
	enc := json.NewEncoder(scratch)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return b, err
	}
	return appendFrame(b, wsOpText, bytes.TrimSuffix(scratch.Bytes(), []byte("\n"))), nil
}
