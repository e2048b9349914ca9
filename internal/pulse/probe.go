package pulse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Facts of PulseAudio's native protocol used by dial (pulsecore/pstream.c,
// tagstruct.h, native-common.h, protocol-native.c):
//   - every packet is framed by a descriptor of five big-endian uint32s:
//     length of the payload, channel (0xFFFFFFFF for control packets),
//     offset high, offset low, flags;
//   - the payload is a tagstruct: each value is a one-byte tag followed by
//     its big-endian encoding ('L' uint32, 'x' uint32 length + bytes);
//   - a client's first command is AUTH (8): tag, protocol version (the high
//     bits request SHM/memfd; dial asks for neither), the 256-byte cookie;
//   - the server answers REPLY (2) with the same tag and its own version, or
//     ERROR (0) with the same tag and an error code.
const (
	descriptorLen  = 20
	controlChannel = 0xFFFFFFFF
	maxFrame       = 64 << 10 // PulseAudio's own frame limit

	cmdError = 0
	cmdReply = 2
	cmdAuth  = 8

	tagU32       = 'L'
	tagArbitrary = 'x'

	probeVersion = 32         // any version >= 13 gets a plain reply
	probeTag     = 0x70736364 // arbitrary; the reply must echo it
	versionMask  = 0x0000FFFF // the reply's high bits carry SHM/memfd flags

	errAccess = 1 // PA_ERR_ACCESS
)

// defaultProbeTimeout bounds a probe whose context has no deadline: a server
// that accepts but never answers must not hang readiness.
const defaultProbeTimeout = 5 * time.Second

// Health is what readiness means: PulseAudio answers AUTH on socketPath and
// has the sink "speaker" and the source "microphone" (a module unloaded at
// run time, or a half-started daemon, is not ready). It costs PulseAudio
// three round trips on one connection, no process.
func Health(ctx context.Context, socketPath string, cookie []byte) error {
	c, err := dial(ctx, socketPath, cookie)
	if err != nil {
		return fmt.Errorf("probe %s: %w", socketPath, err)
	}
	defer c.Close()
	for _, l := range []struct {
		cmd  uint32
		what string
		name string
	}{{cmdLookupSink, "sink", sinkName}, {cmdLookupSource, "source", sourceName}} {
		if _, err := c.lookup(l.cmd, l.name); err != nil {
			return fmt.Errorf("probe %s: %s %q: %w", socketPath, l.what, l.name, ctxErr(ctx, err))
		}
	}
	return nil
}

// authPacket is the framed AUTH command.
func authPacket(tag uint32, cookie []byte) []byte {
	payload := 3*5 + 1 + 4 + len(cookie)
	b := make([]byte, 0, descriptorLen+payload)
	b = binary.BigEndian.AppendUint32(b, uint32(payload))
	b = binary.BigEndian.AppendUint32(b, controlChannel)
	b = binary.BigEndian.AppendUint32(b, 0) // offset hi
	b = binary.BigEndian.AppendUint32(b, 0) // offset lo
	b = binary.BigEndian.AppendUint32(b, 0) // flags
	for _, v := range []uint32{cmdAuth, tag, probeVersion} {
		b = append(b, tagU32)
		b = binary.BigEndian.AppendUint32(b, v)
	}
	b = append(b, tagArbitrary)
	b = binary.BigEndian.AppendUint32(b, uint32(len(cookie)))
	return append(b, cookie...)
}

// readAuthReply reads one control packet and returns the server's protocol
// version from a REPLY carrying tag.
func readAuthReply(r io.Reader, tag uint32) (uint32, error) {
	ts, err := readPacket(r)
	if err != nil {
		return 0, err
	}
	cmd, err := ts.u32()
	if err != nil {
		return 0, err
	}
	gotTag, err := ts.u32()
	if err != nil {
		return 0, err
	}
	if gotTag != tag {
		return 0, fmt.Errorf("reply tag %#x, want %#x", gotTag, tag)
	}
	switch cmd {
	case cmdReply:
		v, err := ts.u32()
		if err != nil {
			return 0, err
		}
		return v & versionMask, nil
	case cmdError:
		code, err := ts.u32()
		if err != nil {
			return 0, err
		}
		if code == errAccess {
			return 0, errors.New("access denied (wrong cookie)")
		}
		return 0, fmt.Errorf("server error %d", code)
	default:
		return 0, fmt.Errorf("unexpected command %d in reply", cmd)
	}
}

// tagstruct reads values from a packet payload.
type tagstruct []byte

func (t *tagstruct) u32() (uint32, error) {
	if len(*t) < 5 || (*t)[0] != tagU32 {
		return 0, errors.New("malformed reply: want a uint32")
	}
	v := binary.BigEndian.Uint32((*t)[1:5])
	*t = (*t)[5:]
	return v, nil
}
