package pulse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// More of the native protocol (pulsecore/native-common.h's command enum,
// protocol-native.c's handlers), for the health check and the speaker wake:
//   - LOOKUP_SINK/LOOKUP_SOURCE (10/11) take a name ('t' string) and answer
//     the index, or ERROR NOENTITY;
//   - SUBSCRIBE (35) takes a facility mask; the server then sends
//     SUBSCRIBE_EVENT (66) packets: tag 0xFFFFFFFF, event type, index;
//   - GET_SOURCE_OUTPUT_INFO (31) takes an index; its reply starts with the
//     index, the name, the owner module, the client and the source's index;
//   - SUSPEND_SINK (70) takes an index (or 0xFFFFFFFF), a name (or null) and
//     a boolean, and answers an empty REPLY.
const (
	cmdLookupSink          = 10
	cmdLookupSource        = 11
	cmdGetSourceOutputInfo = 31
	cmdSubscribe           = 35
	cmdSubscribeEvent      = 66
	cmdSuspendSink         = 70

	tagString     = 't'
	tagStringNull = 'N'
	tagTrue       = '1'
	tagFalse      = '0'

	invalidIndex = 0xFFFFFFFF

	subscriptionMaskSourceOutput = 0x0008
	facilitySourceOutput         = 0x0003
	facilityMask                 = 0x000F
	eventTypeNew                 = 0x0000
	eventTypeRemove              = 0x0020
	eventTypeMask                = 0x0030

	errNoEntity = 5 // PA_ERR_NOENTITY
)

// client is one authenticated connection to PulseAudio's native socket.
// It is not safe for concurrent use.
type client struct {
	conn    net.Conn
	socket  string
	tag     uint32
	events  []event // SUBSCRIBE_EVENTs read while waiting for a reply
	stopCtx func() bool
}

// event is one SUBSCRIBE_EVENT.
type event struct{ typ, index uint32 }

// ErrNoEntity is returned when PulseAudio has no sink or source of the name
// asked for.
var ErrNoEntity = errors.New("no such entity")

// dial connects to socketPath and authenticates with cookie. Reads and
// writes are bounded by ctx: its deadline, or its cancellation.
func dial(ctx context.Context, socketPath string, cookie []byte) (*client, error) {
	if len(cookie) != CookieLen {
		return nil, fmt.Errorf("cookie has %d bytes, want %d", len(cookie), CookieLen)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, socket: socketPath, tag: probeTag}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultProbeTimeout)
	}
	conn.SetDeadline(deadline)
	// Cancellation must interrupt a blocked read, not only the deadline.
	c.stopCtx = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	if _, err := conn.Write(authPacket(c.tag, cookie)); err != nil {
		c.Close()
		return nil, ctxErr(ctx, err)
	}
	version, err := readAuthReply(conn, c.tag)
	if err != nil {
		c.Close()
		return nil, ctxErr(ctx, err)
	}
	if version < 13 {
		c.Close()
		return nil, fmt.Errorf("server protocol version %d is too old", version)
	}
	return c, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Close ends the connection.
func (c *client) Close() error {
	c.stopCtx()
	return c.conn.Close()
}

// request sends one command and returns the payload of its REPLY after the
// tag. SUBSCRIBE_EVENTs that arrive meanwhile are kept in c.events.
func (c *client) request(cmd uint32, args ...byte) (tagstruct, error) {
	c.tag++
	tag := c.tag
	var p []byte
	p = putU32(p, cmd)
	p = putU32(p, tag)
	p = append(p, args...)
	if _, err := c.conn.Write(frame(p)); err != nil {
		return nil, err
	}
	for {
		ts, err := readPacket(c.conn)
		if err != nil {
			return nil, err
		}
		got, err := ts.u32()
		if err != nil {
			return nil, err
		}
		gotTag, err := ts.u32()
		if err != nil {
			return nil, err
		}
		switch {
		case got == cmdSubscribeEvent:
			if ev, err := ts.event(); err == nil {
				c.events = append(c.events, ev)
			}
			continue
		case gotTag != tag:
			return nil, fmt.Errorf("reply tag %#x, want %#x", gotTag, tag)
		case got == cmdReply:
			return ts, nil
		case got == cmdError:
			code, err := ts.u32()
			if err != nil {
				return nil, err
			}
			if code == errNoEntity {
				return nil, ErrNoEntity
			}
			return nil, fmt.Errorf("server error %d", code)
		default:
			return nil, fmt.Errorf("unexpected command %d in reply", got)
		}
	}
}

// lookup returns the index of the sink (cmdLookupSink) or source named name.
func (c *client) lookup(cmd uint32, name string) (uint32, error) {
	ts, err := c.request(cmd, putString(nil, name)...)
	if err != nil {
		return 0, err
	}
	return ts.u32()
}

// suspendSink suspends or resumes the sink named name.
func (c *client) suspendSink(name string, suspend bool) error {
	args := putU32(nil, invalidIndex)
	args = putString(args, name)
	if suspend {
		args = append(args, tagTrue)
	} else {
		args = append(args, tagFalse)
	}
	_, err := c.request(cmdSuspendSink, args...)
	return err
}

// sourceOfOutput returns the index of the source a source output records from.
func (c *client) sourceOfOutput(index uint32) (uint32, error) {
	ts, err := c.request(cmdGetSourceOutputInfo, putU32(nil, index)...)
	if err != nil {
		return 0, err
	}
	if _, err := ts.u32(); err != nil { // index
		return 0, err
	}
	if err := ts.skipString(); err != nil { // name
		return 0, err
	}
	for range 2 { // owner module, client
		if _, err := ts.u32(); err != nil {
			return 0, err
		}
	}
	return ts.u32()
}

// nextEvent returns the next SUBSCRIBE_EVENT, waiting for one.
func (c *client) nextEvent() (event, error) {
	for len(c.events) == 0 {
		ts, err := readPacket(c.conn)
		if err != nil {
			return event{}, err
		}
		cmd, err := ts.u32()
		if err != nil {
			return event{}, err
		}
		if cmd != cmdSubscribeEvent {
			continue // a late reply nobody waits for
		}
		if _, err := ts.u32(); err != nil { // tag
			return event{}, err
		}
		ev, err := ts.event()
		if err != nil {
			return event{}, err
		}
		c.events = append(c.events, ev)
	}
	ev := c.events[0]
	c.events = c.events[1:]
	return ev, nil
}

// readPacket reads one control packet and returns its payload.
func readPacket(r io.Reader) (tagstruct, error) {
	var desc [descriptorLen]byte
	if _, err := io.ReadFull(r, desc[:]); err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	n := binary.BigEndian.Uint32(desc[0:])
	if ch := binary.BigEndian.Uint32(desc[4:]); ch != controlChannel {
		return nil, fmt.Errorf("reply on channel %d, want a control packet", ch)
	}
	if n > maxFrame {
		return nil, fmt.Errorf("reply of %d bytes exceeds %d", n, maxFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	return tagstruct(payload), nil
}

// frame prepends the descriptor of a control packet.
func frame(payload []byte) []byte {
	b := make([]byte, 0, descriptorLen+len(payload))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.BigEndian.AppendUint32(b, controlChannel)
	b = binary.BigEndian.AppendUint32(b, 0) // offset hi
	b = binary.BigEndian.AppendUint32(b, 0) // offset lo
	b = binary.BigEndian.AppendUint32(b, 0) // flags
	return append(b, payload...)
}

func putU32(b []byte, v uint32) []byte {
	b = append(b, tagU32)
	return binary.BigEndian.AppendUint32(b, v)
}

// putString appends a string tag; names never contain NUL (PulseAudio's
// name rules), and the empty string is sent as the null string.
func putString(b []byte, s string) []byte {
	if s == "" {
		return append(b, tagStringNull)
	}
	b = append(b, tagString)
	b = append(b, s...)
	return append(b, 0)
}

func (t *tagstruct) skipString() error {
	if len(*t) >= 1 && (*t)[0] == tagStringNull {
		*t = (*t)[1:]
		return nil
	}
	if len(*t) < 2 || (*t)[0] != tagString {
		return errors.New("malformed reply: want a string")
	}
	for i := 1; i < len(*t); i++ {
		if (*t)[i] == 0 {
			*t = (*t)[i+1:]
			return nil
		}
	}
	return errors.New("malformed reply: unterminated string")
}

func (t *tagstruct) event() (event, error) {
	typ, err := t.u32()
	if err != nil {
		return event{}, err
	}
	idx, err := t.u32()
	if err != nil {
		return event{}, err
	}
	return event{typ: typ, index: idx}, nil
}
