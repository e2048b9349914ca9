package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestPacketRoundTrip(t *testing.T) {
	var stream []byte
	for i := uint64(0); i < 20; i++ {
		stream = AppendPacket(stream, DefaultPID, uint8(i), Stamp{Seq: i, Sent: 1_700_000_000_000_000_000 + int64(i)})
	}
	// A foreign packet (an encoder's, PID 0x100) in between is skipped.
	foreign := make([]byte, PacketSize)
	foreign[0], foreign[1], foreign[2], foreign[3] = 0x47, 0x01, 0x00, 0x10
	stream = append(stream, foreign...)
	if len(stream) != 21*PacketSize {
		t.Fatalf("stream is %d bytes, want %d", len(stream), 21*PacketSize)
	}
	var got []Stamp
	n, err := Stamps(stream, DefaultPID, func(s Stamp) { got = append(got, s) })
	if err != nil || n != 21 {
		t.Fatalf("Stamps = %d, %v; want 21, nil", n, err)
	}
	for i, s := range got {
		if s.Seq != uint64(i) || s.Sent != 1_700_000_000_000_000_000+int64(i) {
			t.Errorf("stamp %d = %+v", i, s)
		}
	}
	if len(got) != 20 {
		t.Errorf("got %d stamps, want 20", len(got))
	}
	p, err := ParsePacket(stream[5*PacketSize : 6*PacketSize])
	if err != nil || p.PID != DefaultPID || p.CC != 5 {
		t.Errorf("ParsePacket = %+v, %v", p, err)
	}
	if _, err := ParsePacket(foreign); !errors.Is(err, ErrNotStamped) {
		t.Errorf("foreign packet: err = %v, want ErrNotStamped", err)
	}
	// Other PIDs with stamps are not ours either.
	if _, err := Stamps(stream, 0x101, func(Stamp) { t.Error("stamp on the wrong PID") }); err != nil {
		t.Error(err)
	}
}

func TestStampsRejectsBrokenMessages(t *testing.T) {
	pkt := AppendPacket(nil, DefaultPID, 0, Stamp{})
	for name, msg := range map[string][]byte{
		"partial packet": pkt[:100],
		"bad sync":       append([]byte{0x46}, pkt[1:]...),
	} {
		if _, err := Stamps(msg, DefaultPID, func(Stamp) {}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(d)
	want := Summary{N: 100, P50: 50 * time.Millisecond, P95: 95 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if s := Summarize(nil); s != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v", s)
	}
	if p := Percentile([]time.Duration{7}, 99); p != 7 {
		t.Errorf("Percentile of one = %v", p)
	}
}

func TestParseStat(t *testing.T) {
	// The command name holds a space and a ')' to trip naive splitting.
	stat := []byte("4242 (pulse sidecar) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 12 0 1234 1000000 500 18446744073709551615\n")
	cpu, err := ParseStatCPU(stat)
	if err != nil || cpu != 3250*time.Millisecond {
		t.Errorf("ParseStatCPU = %v, %v; want 3.25s", cpu, err)
	}
	if pp, err := ParseStatPPID(stat); err != nil || pp != 1 {
		t.Errorf("ParseStatPPID = %d, %v", pp, err)
	}
	if _, err := ParseStatCPU([]byte("1 (x) S 1 2")); err == nil {
		t.Error("short stat: no error")
	}
	if _, err := ParseStatCPU([]byte("garbage")); err == nil {
		t.Error("no command name: no error")
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tpulse-sidecar\nVmPeak:\t  900000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t    2345 kB\nThreads:\t9\n"
	rss, anon, threads, err := ParseStatus([]byte(status))
	if err != nil || rss != 12345*1024 || anon != 2345*1024 || threads != 9 {
		t.Errorf("ParseStatus = %d, %d, %d, %v", rss, anon, threads, err)
	}
	// A zombie has no VmRSS.
	if rss, _, _, err := ParseStatus([]byte("Name:\tz\nThreads:\t1\n")); err != nil || rss != 0 {
		t.Errorf("zombie: %d, %v", rss, err)
	}
	if _, _, _, err := ParseStatus([]byte("VmRSS:\t12 MB\nThreads:\t1\n")); err == nil || !strings.Contains(err.Error(), "VmRSS") {
		t.Errorf("bad unit: err = %v", err)
	}
}

func TestProcSampleSelf(t *testing.T) {
	s, err := Proc{Root: "/proc", PID: os.Getpid()}.Sample()
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if s.RSS <= 0 || s.Threads < 1 || s.FDs < 3 {
		t.Errorf("own sample %+v looks wrong", s)
	}
	rss, pids, err := TreeRSS("/proc", os.Getpid())
	if err != nil || rss < s.RSS || len(pids) < 1 {
		t.Errorf("TreeRSS = %d, %v, %v", rss, pids, err)
	}
}

func TestCPUShare(t *testing.T) {
	t0 := time.Unix(100, 0)
	got := CPUShare(ProcSample{At: t0, CPU: time.Second}, ProcSample{At: t0.Add(10 * time.Second), CPU: 2500 * time.Millisecond})
	if math.Abs(got-0.15) > 1e-9 {
		t.Errorf("CPUShare = %g, want 0.15", got)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
process_resident_memory_bytes 1.2345e+07
pulse_sidecar_speaker_listeners 3 1700000000000
http_requests_total{code="200",path="/x y"} 7

`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{
		"go_goroutines": 42, "process_resident_memory_bytes": 12345000,
		"pulse_sidecar_speaker_listeners": 3, `http_requests_total{code="200",path="/x y"}`: 7,
	} {
		if m[k] != want {
			t.Errorf("%s = %g, want %g", k, m[k], want)
		}
	}
	for _, bad := range []string{"no_value\n", "x{a=\"b\" 1\n", "x one\n"} {
		if _, err := ParseMetrics(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err = %v, want one naming line 1", bad, err)
		}
	}
}

func TestParseSteps(t *testing.T) {
	got, err := ParseSteps("1, 10,100")
	if err != nil || len(got) != 3 || got[2] != 100 {
		t.Errorf("ParseSteps = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "10,5", "1,x"} {
		if _, err := ParseSteps(bad); err == nil {
			t.Errorf("ParseSteps(%q): no error", bad)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	if got := parseMemTotal("MemTotal:        8023456 kB\nMemFree: 1 kB\n"); got != 8023456*1024 {
		t.Errorf("parseMemTotal = %d", got)
	}
}

func TestOnsetDetector(t *testing.T) {
	const rate = 44100
	silence := make([]float32, rate/2)
	tone := make([]float32, rate/10)
	for i := range tone {
		tone[i] = float32(0.5 * math.Sin(2*math.Pi*1000*float64(i)/rate))
	}
	var signal []float32
	for i := 0; i < 3; i++ {
		signal = append(append(signal, silence...), tone...)
	}
	d := OnsetDetector{Window: rate / 400, Threshold: 0.05, Quiet: 40}
	var onsets []int64
	// Odd piece sizes: the detector must not care how samples arrive.
	for len(signal) > 0 {
		n := min(len(signal), 333)
		onsets = append(onsets, d.Feed(signal[:n])...)
		signal = signal[n:]
	}
	if len(onsets) != 3 {
		t.Fatalf("onsets = %v, want 3", onsets)
	}
	for i, o := range onsets {
		want := int64(i*(len(silence)+len(tone)) + len(silence))
		if o < want-int64(d.Window) || o > want+int64(d.Window) {
			t.Errorf("onset %d at sample %d, want about %d", i, o, want)
		}
	}
}

func TestBurstWAV(t *testing.T) {
	pcm := burstPCM(1000, 100*time.Millisecond)
	w := append(wavHeader(len(pcm)), pcm...)
	if !bytes.HasPrefix(w, []byte("RIFF")) || len(w) != 44+2*4410 {
		t.Errorf("burstWAV: %d bytes, prefix %q", len(w), w[:4])
	}
}

// cancelAfter cancels once it has taken n writes.
type cancelAfter struct {
	bytes.Buffer
	writes, n int
	cancel    func()
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.writes++
	if c.writes == c.n {
		c.cancel()
	}
	return c.Buffer.Write(p)
}

func TestWriter(t *testing.T) {
	w := Writer{PID: DefaultPID, BitRate: DefaultBitRate}
	if got := w.Interval(); got < 21*time.Millisecond || got > 22*time.Millisecond {
		t.Errorf("Interval at 207 kbit/s = %v, want ~21.8ms", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := &cancelAfter{n: 5, cancel: cancel}
	st, err := Writer{PID: DefaultPID}.Run(ctx, dst) // max rate
	if err != nil || st.Packets != 15 || dst.Len() != 15*PacketSize {
		t.Fatalf("Run = %+v, %v; wrote %d bytes", st, err, dst.Len())
	}
	var seqs []uint64
	if _, err := Stamps(dst.Bytes(), DefaultPID, func(s Stamp) { seqs = append(seqs, s.Seq) }); err != nil {
		t.Fatal(err)
	}
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("seq %d = %d", i, s)
		}
	}
}

// TestPoolAgainstStubRelay runs listeners against an in-process stand-in
// that broadcasts stamped packets, so the listener side is checked without
// a daemon.
func TestPoolAgainstStubRelay(t *testing.T) {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for seq := uint64(0); seq < 200; seq += 3 {
			var msg []byte
			now := time.Now().UnixNano()
			for i := uint64(0); i < 3; i++ {
				if seq == 30 && i == 0 {
					continue // one lost packet
				}
				msg = AppendPacket(msg, DefaultPID, uint8(seq+i), Stamp{Seq: seq + i, Sent: now})
			}
			if c.WriteMessage(websocket.BinaryMessage, msg) != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
		c.ReadMessage() // until the client closes
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := &Pool{URL: "ws" + strings.TrimPrefix(srv.URL, "http"), PID: DefaultPID}
	defer p.Close()
	if err := p.Grow(ctx, 3); err != nil {
		t.Fatal(err)
	}
	var st PoolStats
	total := PoolStats{}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st = p.Take()
		total.Stamped += st.Stamped
		total.Lost += st.Lost
		total.Delays = append(total.Delays, st.Delays...)
		if total.Stamped == 3*200 {
			break
		}
	}
	if total.Stamped != 3*200 || total.Lost != 3 {
		t.Errorf("stamped %d lost %d, want 600 and 3", total.Stamped, total.Lost)
	}
	if len(total.Delays) != 3*67 {
		t.Errorf("%d delays, want one per message: %d", len(total.Delays), 3*67)
	}
	for _, d := range total.Delays {
		if d < 0 || d > 10*time.Second {
			t.Fatalf("delay %v out of range", d)
		}
	}
}

func TestOpenFIFORefusesRegularFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "speaker")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openFIFO(p); err == nil || !strings.Contains(err.Error(), "not a FIFO") {
		t.Errorf("openFIFO on a regular file: %v", err)
	}
}

func BenchmarkStamps(b *testing.B) {
	var msg []byte
	for i := uint64(0); i < 3; i++ {
		msg = AppendPacket(msg, DefaultPID, uint8(i), Stamp{Seq: i, Sent: 1})
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Stamps(msg, DefaultPID, func(Stamp) {}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestOpenFIFOWithoutRelay(t *testing.T) {
	p := filepath.Join(t.TempDir(), "speaker")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	// Nobody reads it: the open must fail at once rather than hang.
	if _, err := openFIFO(p); err == nil || !strings.Contains(err.Error(), "is the relay running") {
		t.Errorf("openFIFO with no reader: %v", err)
	}
}

// stubSpeaker serves one websocket per client and sends it every message
// that send returns until the client leaves; nil means send nothing.
func stubSpeaker(t *testing.T, send func() []byte) string {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		go c.ReadMessage() // notices the client's close
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if msg := send(); msg != nil && c.WriteMessage(websocket.BinaryMessage, msg) != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestFootprintPhases measures this test process as the "sidecar": three
// phases, what the listener received in the streaming one, and the
// command line that tells two processes of one name apart.
func TestFootprintPhases(t *testing.T) {
	ws := stubSpeaker(t, func() []byte { return AppendPacket(nil, DefaultPID, 0, Stamp{}) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &Footprint{Target: Target{WS: ws, PID: os.Getpid()}, Duration: 300 * time.Millisecond, Listeners: 1, After: 100 * time.Millisecond}
	res, err := f.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ph := range res.Phases {
		names = append(names, ph.Name)
	}
	if strings.Join(names, ",") != "idle,streaming,after" {
		t.Fatalf("phases %q, want idle, streaming, after", names)
	}
	// 188 bytes every ~10 ms is ~150 kbit/s; a loaded machine sends fewer.
	if st := res.Phases[1]; st.Listeners != 1 || st.Kbps < 10 || st.Kbps > 1000 {
		t.Errorf("streaming: %d listeners received %.1f kbit/s, want 1 and ~150", st.Listeners, st.Kbps)
	}
	if after := res.Phases[2]; after.Listeners != 0 || after.Kbps != 0 {
		t.Errorf("after: %d listeners, %.1f kbit/s, want none", after.Listeners, after.Kbps)
	}
	for _, ph := range res.Phases {
		if ph.Anon <= 0 || ph.Anon > ph.RSS {
			t.Errorf("%s: anonymous %d of RSS %d", ph.Name, ph.Anon, ph.RSS)
		}
	}
	self := res.Phases[0].Procs[0]
	exe := filepath.Join(filepath.Base(filepath.Dir(os.Args[0])), filepath.Base(os.Args[0]))
	if self.PID != os.Getpid() || !strings.HasPrefix(self.Cmd, exe+" ") {
		t.Errorf("this process reads as %+v, want pid %d and a command starting %q", self, os.Getpid(), exe)
	}
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil || !strings.Contains(table.String(), "received") {
		t.Errorf("table (%v):\n%s", err, table.String())
	}
}

// TestFootprintRefusesSilence: a streaming phase in which the listener got
// nothing measured an idle sidecar, not a streaming one.
func TestFootprintRefusesSilence(t *testing.T) {
	ws := stubSpeaker(t, func() []byte { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &Footprint{Target: Target{WS: ws, PID: os.Getpid()}, Duration: 200 * time.Millisecond, Listeners: 1}
	if _, err := f.Run(ctx); err == nil || !strings.Contains(err.Error(), "no audio reached") {
		t.Errorf("a silent relay: %v, want an error saying no audio reached the listener", err)
	}
}
