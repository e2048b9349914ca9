package speaker

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a hand-advanced clock for the slow-listener rule.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestHub(t testing.TB, queueBytes int, slowAfter time.Duration) (*hub, *metrics, *fakeClock) {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	return &hub{queueBytes: queueBytes, slowAfter: slowAfter, m: m}, m, clock
}

// drain takes everything queued for l.
func drain(l *listener) []byte {
	var got []byte
	for _, c := range l.take(nil) {
		got = append(got, c.data...)
	}
	return got
}

func TestHubFanOut(t *testing.T) {
	h, m, clock := newTestHub(t, 1<<20, time.Minute)
	rng := rand.New(rand.NewPCG(1, 1))
	const listeners, chunks = 5, 200
	var (
		wg   sync.WaitGroup
		got  = make([][]byte, listeners)
		stop = make(chan struct{})
	)
	for i := range listeners {
		l := h.join(nil)
		wg.Go(func() {
			var batch []*chunk
			for {
				select {
				case <-l.ready:
					batch = l.take(batch)
					for _, c := range batch {
						got[i] = append(got[i], c.data...)
					}
				case <-stop:
					// One last look: a token may not have been seen yet.
					got[i] = append(got[i], drain(l)...)
					return
				}
			}
		})
	}
	if n := testutil.ToFloat64(m.listeners); n != listeners {
		t.Fatalf("listeners gauge %v, want %d", n, listeners)
	}
	var want []byte
	for i := range chunks {
		c := tsPackets(rng, i*3, 1+rng.IntN(3))
		want = append(want, c...)
		if err := h.broadcast(c, clock.now()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	for i, g := range got {
		if !bytes.Equal(g, want) {
			t.Errorf("listener %d got %d bytes, want the %d broadcast", i, len(g), len(want))
		}
	}
	if s := testutil.ToFloat64(m.skippedBytes); s != 0 {
		t.Errorf("%v bytes skipped with a queue bound nobody reached", s)
	}
}

func TestHubSlowListener(t *testing.T) {
	const bound = 10 * PacketSize
	h, m, clock := newTestHub(t, bound, 5*time.Second)
	rng := rand.New(rand.NewPCG(2, 2))
	fast := h.join(nil)
	slow := h.join(nil) // never reads

	var want, got []byte
	for i := range 200 {
		c := tsPackets(rng, i*2, 2)
		want = append(want, c...)
		if err := h.broadcast(c, clock.now()); err != nil {
			t.Fatal(err)
		}
		got = append(got, drain(fast)...)
		slow.mu.Lock()
		queued := slow.queued
		slow.mu.Unlock()
		if queued > bound {
			t.Fatalf("after chunk %d the slow listener holds %d bytes, bound %d", i, queued, bound)
		}
		clock.advance(10 * time.Millisecond) // 2 s in all: not yet closed
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("fast listener got %d bytes, want %d", len(got), len(want))
	}
	if testutil.ToFloat64(m.skippedBytes) == 0 {
		t.Fatal("slow listener skipped nothing")
	}
	select {
	case <-slow.done:
		t.Fatal("slow listener closed before it was behind for 5 s")
	default:
	}

	clock.advance(5 * time.Second)
	for i := range 20 { // enough to overflow its queue again
		if err := h.broadcast(tsPackets(rng, i, 2), clock.now()); err != nil {
			t.Fatal(err)
		}
		drain(fast)
	}
	select {
	case <-slow.done:
	default:
		t.Fatal("slow listener still open after being behind for 7 s")
	}
	if h.len() != 1 {
		t.Errorf("hub has %d listeners, want only the fast one", h.len())
	}
	if n := testutil.ToFloat64(m.slowClosed); n != 1 {
		t.Errorf("slow_listeners_closed_total %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.listeners); n != 1 {
		t.Errorf("listeners gauge %v, want 1", n)
	}
	h.leave(slow) // its handler still leaves; that must not count twice
	if n := testutil.ToFloat64(m.listeners); n != 1 {
		t.Errorf("listeners gauge %v after a late leave, want 1", n)
	}
}

// A listener that fell behind once but then keeps up again is not closed
// however long ago its drop was.
func TestHubListenerCatchesUp(t *testing.T) {
	h, _, clock := newTestHub(t, 4*PacketSize, time.Second)
	rng := rand.New(rand.NewPCG(3, 3))
	l := h.join(nil)
	for i := range 10 { // falls behind
		_ = h.broadcast(tsPackets(rng, i, 1), clock.now())
	}
	drain(l) // a backlog: still behind
	_ = h.broadcast(tsPackets(rng, 0, 1), clock.now())
	drain(l) // one chunk, no drop: caught up
	for i := range 100 {
		clock.advance(100 * time.Millisecond)
		_ = h.broadcast(tsPackets(rng, i, 1), clock.now())
		drain(l)
	}
	for i := range 10 { // behind again, but only just now
		_ = h.broadcast(tsPackets(rng, i, 1), clock.now())
	}
	select {
	case <-l.done:
		t.Fatal("listener closed although it had caught up in between")
	default:
	}
}

func TestHubJoinGetsOnlyNewChunks(t *testing.T) {
	h, _, clock := newTestHub(t, 1<<20, time.Minute)
	rng := rand.New(rand.NewPCG(4, 4))
	early := h.join(nil)
	_ = h.broadcast(tsPackets(rng, 0, 3), clock.now())
	late := h.join(nil)
	c := tsPackets(rng, 3, 2)
	_ = h.broadcast(c, clock.now())
	if got := drain(late); !bytes.Equal(got, c) {
		t.Fatalf("late listener got packets %v, want %v", numbers(got), numbers(c))
	}
	if got := drain(early); len(got) != 5*PacketSize {
		t.Fatalf("early listener got %d bytes, want 5 packets", len(got))
	}
}

// BenchmarkHubBroadcast measures one chunk (three packets, what ffmpeg
// writes every ~26 ms) reaching every listener's queue and being taken by
// its writer.
func BenchmarkHubBroadcast(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("listeners=%d", n), func(b *testing.B) {
			h, _, clock := newTestHub(b, 1<<20, time.Minute)
			ls := make([]*listener, n)
			batches := make([][]*chunk, n)
			for i := range ls {
				ls[i] = h.join(nil)
			}
			data := tsPackets(rand.New(rand.NewPCG(5, 5)), 0, 3)
			b.SetBytes(int64(len(data) * n))
			b.ReportAllocs()
			for b.Loop() {
				if err := h.broadcast(data, clock.now()); err != nil {
					b.Fatal(err)
				}
				for i, l := range ls {
					<-l.ready
					batches[i] = l.take(batches[i])
				}
			}
		})
	}
}
