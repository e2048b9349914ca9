package pulse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// requestTimeout bounds one exchange on a long-lived connection.
const requestTimeout = 2 * time.Second

// restartSpeakerClock suspends and resumes the speaker sink on c. An idle
// null sink renders in blocks of its maximum latency (2 s) and a recording
// stream that connects waits for the current block to end; after a resume
// the sink starts a new block at once, sized for the streams connected now.
func restartSpeakerClock(c *client) error {
	if err := c.suspendSink(sinkName, true); err != nil {
		return fmt.Errorf("suspending sink %q: %w", sinkName, err)
	}
	if err := c.suspendSink(sinkName, false); err != nil {
		return fmt.Errorf("resuming sink %q: %w", sinkName, err)
	}
	return nil
}

// watchSpeakerMonitor restarts the speaker's clock whenever a stream starts
// recording speaker.monitor while no other does (the encoder, started for
// the first listener),
// so it gets audio within a block of its own latency instead of after the
// idle 2 s block. It returns when ctx ends or the connection fails (the
// PulseAudio it talks to exited).
func watchSpeakerMonitor(ctx context.Context, socket string, cookie []byte, log *slog.Logger) error {
	// ctx has no deadline: dial bounds the handshake itself, and ctx's end
	// interrupts any read from then on.
	c, err := dial(ctx, socket, cookie)
	if err != nil {
		return fmt.Errorf("speaker monitor watch: %w", err)
	}
	defer c.Close()
	c.conn.SetDeadline(time.Now().Add(requestTimeout))
	if ctx.Err() != nil { // the cancel hook's "deadline now" was just overwritten
		return ctx.Err()
	}
	monitor, err := c.lookup(cmdLookupSource, sinkName+".monitor")
	if err != nil {
		return fmt.Errorf("speaker monitor watch: source %s.monitor: %w", sinkName, ctxErr(ctx, err))
	}
	if _, err := c.request(cmdSubscribe, putU32(nil, subscriptionMaskSourceOutput)...); err != nil {
		return fmt.Errorf("speaker monitor watch: subscribe: %w", ctxErr(ctx, err))
	}
	// Streams recording the monitor now: a restart is for the first one
	// only, since a suspend would make those already recording (the encoder
	// serving listeners) skip.
	recording := map[uint32]bool{}
	for {
		c.conn.SetDeadline(time.Time{})
		if ctx.Err() != nil {
			return nil
		}
		ev, err := c.nextEvent()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("speaker monitor watch: %w", err)
		}
		if ev.typ&facilityMask != facilitySourceOutput {
			continue
		}
		if ev.typ&eventTypeMask == eventTypeRemove {
			delete(recording, ev.index)
			continue
		}
		if ev.typ&eventTypeMask != eventTypeNew {
			continue
		}
		c.conn.SetDeadline(time.Now().Add(requestTimeout))
		if ctx.Err() != nil { // the cancel hook's "deadline now" was just overwritten
			return ctx.Err()
		}
		src, err := c.sourceOfOutput(ev.index)
		if errors.Is(err, ErrNoEntity) {
			continue // gone already
		}
		if err != nil {
			return fmt.Errorf("speaker monitor watch: source output %d: %w", ev.index, ctxErr(ctx, err))
		}
		if src != monitor {
			continue
		}
		first := len(recording) == 0
		recording[ev.index] = true
		if !first {
			continue
		}
		start := time.Now()
		if err := restartSpeakerClock(c); err != nil {
			return fmt.Errorf("speaker monitor watch: %w", ctxErr(ctx, err))
		}
		log.Debug("speaker clock restarted for a new recording of its monitor", "source_output", ev.index,
			"took", time.Since(start))
	}
}
