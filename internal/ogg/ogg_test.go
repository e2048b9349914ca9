package ogg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os/exec"
	"sync"
	"testing"

	"github.com/pulse-sidecar/pulse-sidecar/internal/audiotest"
	"github.com/pulse-sidecar/pulse-sidecar/internal/testenv"
)

// encodeSine runs the speaker's encoder settings on a 1 kHz sine: libopus,
// 10 ms frames, one page per frame.
func encodeSine(t testing.TB, seconds float64) []byte {
	t.Helper()
	ffmpeg := testenv.Tool(t, "ffmpeg")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", fmt.Sprintf("sine=frequency=1000:sample_rate=48000:duration=%g", seconds),
		"-ac", "1", "-c:a", "libopus", "-b:a", "96k", "-frame_duration", "10", "-application", "lowdelay",
		"-f", "ogg", "-page_duration", "10000", "-flush_packets", "1", "pipe:1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg encode: %v: %s", err, errb.String())
	}
	return out.Bytes()
}

var (
	sineOnce sync.Once
	sineOgg  []byte
)

// sine is one second of encodeSine, made once for all tests.
func sine(t testing.TB) []byte {
	t.Helper()
	testenv.Tool(t, "ffmpeg")
	sineOnce.Do(func() { sineOgg = encodeSine(t, 1) })
	if len(sineOgg) == 0 {
		t.Fatal("no encoded sine")
	}
	return sineOgg
}

// ffdecode decodes an Ogg Opus stream with ffmpeg to 48 kHz mono samples.
func ffdecode(t testing.TB, ogg []byte) []float32 {
	t.Helper()
	ffmpeg := testenv.Tool(t, "ffmpeg")
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-i", "pipe:0",
		"-f", "f32le", "-ac", "1", "-ar", "48000", "pipe:1")
	cmd.Stdin = bytes.NewReader(ogg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg decode of %d bytes: %v: %s", len(ogg), err, errb.String())
	}
	if errb.Len() > 0 {
		t.Logf("ffmpeg decode said: %s", errb.String())
	}
	return audiotest.F32LE(out.Bytes())
}

func readAll(t testing.TB, b []byte) []Page {
	t.Helper()
	r := NewReader(bytes.NewReader(b))
	var pages []Page
	for i := 0; i < 100000; i++ {
		p, err := r.Next()
		if err == io.EOF {
			if r.Skipped() != 0 {
				t.Errorf("skipped %d bytes of a clean stream", r.Skipped())
			}
			return pages
		}
		if err != nil {
			t.Fatalf("page %d: %v", len(pages), err)
		}
		pages = append(pages, p)
	}
	t.Fatal("too many pages")
	return nil
}

// checkTone asserts that samples hold a 1 kHz tone for about want seconds.
func checkTone(t *testing.T, samples []float32, freq, want float64) {
	t.Helper()
	start, end, ok := audiotest.Loud(samples, 48000, 0.05)
	if !ok {
		t.Fatalf("%d decoded samples hold no tone", len(samples))
	}
	got := float64(end-start) / 48000
	if math.Abs(got-want) > 0.05 {
		t.Errorf("decoded %.3f s of tone, want %.3f s", got, want)
	}
	// Leave out the edges, where the codec fades in and out.
	margin := 48000 / 20
	if end-start > 3*margin {
		start, end = start+margin, end-margin
	}
	if f := audiotest.DominantFrequency(samples[start:end], 48000); math.Abs(f-freq) > freq/100 {
		t.Errorf("decoded tone at %.1f Hz, want %g Hz within 1%%", f, freq)
	}
}

func TestFFmpegPagesAreOneFrameEach(t *testing.T) {
	pages := readAll(t, sine(t))
	if len(pages) < 100 {
		t.Fatalf("%d pages for 1 s of 10 ms frames", len(pages))
	}
	if p := pages[0]; p.Kind != KindOpusHead || !p.BOS() || p.NewStream {
		t.Fatalf("first page: kind %v BOS %v new %v, want the OpusHead page", p.Kind, p.BOS(), p.NewStream)
	}
	head, err := ParseOpusHead(pages[0].Body())
	if err != nil {
		t.Fatal(err)
	}
	if head.Channels != 1 || head.InputRate != 48000 {
		t.Errorf("OpusHead %+v, want mono 48000 Hz", head)
	}
	if pages[1].Kind != KindOpusTags || pages[1].Granule != 0 {
		t.Fatalf("second page: kind %v granule %d, want OpusTags at 0", pages[1].Kind, pages[1].Granule)
	}
	var asm Assembler
	for i, p := range pages {
		if p.Serial != pages[0].Serial || p.Sequence != uint32(i) {
			t.Fatalf("page %d: serial %#x sequence %d", i, p.Serial, p.Sequence)
		}
		pkts := asm.Push(p)
		if len(pkts) != 1 {
			t.Fatalf("page %d holds %d packets, want 1", i, len(pkts))
		}
		if i < 2 {
			continue
		}
		if p.Kind != KindAudio {
			t.Fatalf("page %d: kind %v, want audio", i, p.Kind)
		}
		n, err := PacketSamples(pkts[0].Data)
		if err != nil || n != 480 {
			t.Fatalf("page %d: packet of %d samples (%v), want one 10 ms frame", i, n, err)
		}
		// The last page's granule ends the stream where the input
		// ended, inside its frame (RFC 7845 section 4.5).
		if d := p.Granule - pages[i-1].Granule; i > 2 && d != 480 && !(p.EOS() && d > 0 && d < 480) {
			t.Errorf("page %d: granule %d after %d, want +480", i, p.Granule, pages[i-1].Granule)
		}
		if pkts[0].Granule != p.Granule {
			t.Errorf("page %d: packet granule %d, page %d", i, pkts[0].Granule, p.Granule)
		}
	}
	if !pages[len(pages)-1].EOS() {
		t.Error("last page is not flagged end of stream")
	}
	hs := NewReader(bytes.NewReader(sine(t)))
	for range 3 {
		hs.Next()
	}
	if h := hs.Headers(); len(h) != 2 || !bytes.Equal(h[0].Raw, pages[0].Raw) || !bytes.Equal(h[1].Raw, pages[1].Raw) {
		t.Errorf("Headers() returned %d pages, want the OpusHead and OpusTags pages", len(h))
	}
}

func TestRandomChunksGiveIdenticalPages(t *testing.T) {
	data := sine(t)
	want := readAll(t, data)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		var s Splitter
		var got []Page
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(700))
			if round == 0 {
				n = 1
			}
			s.Write(rest[:n])
			rest = rest[n:]
			for {
				p, ok := s.Next()
				if !ok {
					break
				}
				got = append(got, p)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("round %d: %d pages, want %d", round, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i].Raw, want[i].Raw) || got[i].Kind != want[i].Kind {
				t.Fatalf("round %d: page %d differs", round, i)
			}
		}
		if s.Skipped() != 0 || s.Buffered() != 0 {
			t.Errorf("round %d: skipped %d, %d left over", round, s.Skipped(), s.Buffered())
		}
	}
}

func TestResyncsOnGarbage(t *testing.T) {
	pages := readAll(t, sine(t))
	var in []byte
	in = append(in, "garbage before the stream, with OggS inside it"...)
	var wantRaw [][]byte
	for i, p := range pages {
		switch {
		case i == 10:
			// A corrupted page is dropped whole.
			bad := append([]byte(nil), p.Raw...)
			bad[len(bad)-1] ^= 0xff
			in = append(in, bad...)
			continue
		case i == 20:
			// Truncated: its header claims more than what follows.
			in = append(in, p.Raw[:len(p.Raw)/2]...)
			continue
		case i == 30:
			in = append(in, "OggS\x01"...) // bad version
		case i == 40:
			in = append(in, bytes.Repeat([]byte{0}, 5000)...)
		}
		in = append(in, p.Raw...)
		wantRaw = append(wantRaw, p.Raw)
	}
	r := NewReader(bytes.NewReader(in))
	var got [][]byte
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Raw)
	}
	// The truncated page swallows the start of the next one only if the
	// next one's capture falls inside the claimed length; its CRC then
	// fails and the splitter resyncs inside, finding the next page.
	if len(got) != len(wantRaw) {
		t.Fatalf("got %d pages, want %d", len(got), len(wantRaw))
	}
	for i := range got {
		if !bytes.Equal(got[i], wantRaw[i]) {
			t.Fatalf("page %d differs", i)
		}
	}
	if r.Skipped() == 0 {
		t.Error("nothing counted as skipped")
	}
}

func TestTruncatedEndIsUnexpectedEOF(t *testing.T) {
	data := sine(t)
	r := NewReader(bytes.NewReader(data[:len(data)-10]))
	for i := 0; ; i++ {
		_, err := r.Next()
		if err == nil {
			continue
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("after %d pages: %v, want unexpected EOF", i, err)
		}
		break
	}
}

func TestParsePageChecksCRC(t *testing.T) {
	pages := readAll(t, sine(t))
	p, err := ParsePage(pages[5].Raw)
	if err != nil {
		t.Fatal(err)
	}
	if p.Granule != pages[5].Granule || p.Sequence != 5 {
		t.Errorf("ParsePage gives granule %d sequence %d", p.Granule, p.Sequence)
	}
	bad := append([]byte(nil), pages[5].Raw...)
	bad[30] ^= 1
	if _, err := ParsePage(bad); !errors.Is(err, ErrCRC) {
		t.Errorf("corrupted page: %v, want %v", err, ErrCRC)
	}
	if _, err := ParsePage(bad[:20]); !errors.Is(err, ErrShort) {
		t.Errorf("short page: %v, want %v", err, ErrShort)
	}
}

// TestCRCMatchesReference pins the checksum against a page written by
// libogg (as ffmpeg writes it), so a bit-reflected or IEEE CRC-32 fails.
func TestCRCMatchesReference(t *testing.T) {
	for i, p := range readAll(t, sine(t)) {
		raw := p.Raw
		rebuilt, err := AppendPage(nil, PageHeader{Flags: p.Flags, Granule: p.Granule, Serial: p.Serial, Sequence: p.Sequence}, mustPackets(t, p)...)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rebuilt, raw) {
			t.Fatalf("page %d rebuilt differs from ffmpeg's", i)
		}
	}
}

func mustPackets(t *testing.T, p Page) [][]byte {
	pieces, last := p.Packets()
	if !last || p.Continued() {
		t.Fatal("test pages hold whole packets")
	}
	return pieces
}

// A listener joining mid-stream gets the header pages, then pages from the
// middle with their original sequence numbers and granule positions.
func TestLateJoinerDecodes(t *testing.T) {
	pages := readAll(t, sine(t))
	from := len(pages) / 2
	var joined []byte
	r := NewReader(bytes.NewReader(sine(t)))
	for range from {
		r.Next()
	}
	for _, h := range r.Headers() {
		joined = append(joined, h.Raw...)
	}
	for _, p := range pages[from:] {
		joined = append(joined, p.Raw...)
	}
	want := float64(len(pages)-from-1) * 0.010 // the last page is shorter
	checkTone(t, ffdecode(t, joined), 1000, want)
}

// Packets taken out of ffmpeg's stream by the Assembler and written again
// by OpusWriter decode to the same tone.
func TestRewrappedPacketsDecode(t *testing.T) {
	var asm Assembler
	var buf bytes.Buffer
	w, err := NewOpusWriter(&buf, 0x5eed, OpusHead{Channels: 1, PreSkip: DefaultPreSkip, InputRate: 48000}, "pulse-sidecar test")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range readAll(t, sine(t)) {
		if p.Kind != KindAudio {
			continue
		}
		for _, pkt := range asm.Push(p) {
			if err := w.WritePacket(pkt.Data); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Granule() != int64(n*480) {
		t.Errorf("granule %d after %d packets of 480", w.Granule(), n)
	}
	pages := readAll(t, buf.Bytes())
	if len(pages) != n+3 || pages[0].Kind != KindOpusHead || pages[1].Kind != KindOpusTags || !pages[len(pages)-1].EOS() {
		t.Fatalf("written stream has %d pages for %d packets", len(pages), n)
	}
	samples := ffdecode(t, buf.Bytes())
	if d := float64(len(samples)) / 48000; math.Abs(d-float64(n*480-DefaultPreSkip)/48000) > 0.02 {
		t.Errorf("decoded %.3f s from %d packets", d, n)
	}
	checkTone(t, samples, 1000, 1.0)
}

func TestChainedStreamIsNew(t *testing.T) {
	a, b := sine(t), encodeSine(t, 0.5)
	var s Splitter
	s.Write(a)
	s.Write(b)
	var heads []Page
	var last Page
	for {
		p, ok := s.Next()
		if !ok {
			break
		}
		if p.Kind == KindOpusHead {
			heads = append(heads, p)
		}
		last = p
	}
	if len(heads) != 2 || heads[0].NewStream || !heads[1].NewStream {
		t.Fatalf("%d OpusHead pages, NewStream flags wrong", len(heads))
	}
	if h := s.Headers(); len(h) != 2 || h[0].Serial != last.Serial || !bytes.Equal(h[0].Raw, heads[1].Raw) {
		t.Error("Headers() are not the second stream's")
	}
	// The chained stream decodes as both tones in a row.
	checkTone(t, ffdecode(t, append(append([]byte(nil), a...), b...)), 1000, 1.5)
}

func TestAssemblerAcrossPages(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 7000) // 70000 bytes: spans pages
	lacing := func(n int, end bool) []byte {
		l := bytes.Repeat([]byte{255}, n/255)
		if end {
			l = append(l, byte(n%255))
		}
		return l
	}
	page := func(seq uint32, flags byte, granule int64, lace []byte, body []byte) Page {
		raw := append([]byte("OggS"), 0, flags)
		raw = append(raw, make([]byte, 20)...)
		raw[6], raw[14], raw[18] = byte(granule), 7, byte(seq)
		for i := range 8 {
			raw[6+i] = byte(uint64(granule) >> (8 * i))
		}
		raw = append(raw, byte(len(lace)))
		raw = append(raw, lace...)
		raw = append(raw, body...)
		crc := pageCRC(raw)
		raw[22], raw[23], raw[24], raw[25] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
		p, err := ParsePage(raw)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := 255 * 255
	p1 := page(1, 0, NoGranule, lacing(first, false), big[:first])
	rest := len(big) - first
	small := []byte("small")
	p2 := page(2, FlagContinued, 960, append(lacing(rest, true), lacing(len(small), true)...), append(big[first:], small...))

	var a Assembler
	if got := a.Push(p1); len(got) != 0 {
		t.Fatalf("first page completed %d packets", len(got))
	}
	got := a.Push(p2)
	if len(got) != 2 || !bytes.Equal(got[0].Data, big) || !bytes.Equal(got[1].Data, small) {
		t.Fatalf("reassembled %d packets", len(got))
	}
	if got[0].Granule != NoGranule || got[1].Granule != 960 {
		t.Errorf("granules %d, %d", got[0].Granule, got[1].Granule)
	}
	// Without the first page, the packet's tail is dropped.
	var b Assembler
	if got := b.Push(p2); len(got) != 1 || !bytes.Equal(got[0].Data, small) {
		t.Errorf("joiner at the second page got %d packets, want the small one", len(got))
	}
	// A gap in the sequence drops the packet too.
	var c Assembler
	c.Push(p1)
	p2.Sequence = 3
	if got := c.Push(p2); len(got) != 1 {
		t.Errorf("after a gap got %d packets, want 1", len(got))
	}
}

func TestPacketSamples(t *testing.T) {
	for _, c := range []struct {
		pkt  []byte
		want int
		bad  bool
	}{
		{pkt: []byte{31 << 3}, want: 960},              // CELT FB 20 ms
		{pkt: []byte{30<<3 | 1}, want: 960},            // two 10 ms frames
		{pkt: []byte{16 << 3}, want: 120},              // CELT NB 2.5 ms
		{pkt: []byte{3 << 3}, want: 2880},              // SILK NB 60 ms
		{pkt: []byte{3<<3 | 3, 2}, want: 5760},         // 2 x 60 ms
		{pkt: []byte{3<<3 | 3, 3}, bad: true},          // 180 ms
		{pkt: []byte{19<<3 | 3, 0x80 | 5}, want: 4800}, // 5 x 20 ms, VBR flag
		{pkt: []byte{19<<3 | 3}, bad: true},
		{pkt: []byte{19<<3 | 3, 0}, bad: true},
		{pkt: nil, bad: true},
	} {
		n, err := PacketSamples(c.pkt)
		if (err != nil) != c.bad || n != c.want {
			t.Errorf("PacketSamples(%x) = %d, %v; want %d (error %v)", c.pkt, n, err, c.want, c.bad)
		}
	}
}

func TestOpusHeadRoundTrip(t *testing.T) {
	h := OpusHead{Channels: 2, PreSkip: 312, InputRate: 44100, OutputGain: -256}
	b, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 19 {
		t.Errorf("OpusHead of %d bytes, want 19", len(b))
	}
	got, err := ParseOpusHead(b)
	if err != nil || got != h {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	if _, err := (OpusHead{Channels: 3}).Marshal(); err == nil {
		t.Error("3 channels in mapping family 0 accepted")
	}
}

func FuzzSplitter(f *testing.F) {
	var buf bytes.Buffer
	w, _ := NewOpusWriter(&buf, 1, OpusHead{Channels: 1, PreSkip: DefaultPreSkip}, "fuzz")
	for i := range 5 {
		w.WritePacket([]byte{0xf8, byte(i), 1, 2, 3})
	}
	w.Close()
	f.Add(buf.Bytes(), uint16(1))
	f.Add(buf.Bytes()[3:], uint16(7))
	f.Add(append([]byte("OggS\x00\x02"), buf.Bytes()...), uint16(13))
	f.Add([]byte("OggSOggSOggS"), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		step := int(chunk%1024) + 1
		var whole, chunked Splitter
		whole.Write(data)
		var a []Page
		for p, ok := whole.Next(); ok; p, ok = whole.Next() {
			a = append(a, p)
		}
		var b []Page
		for i := 0; i < len(data); i += step {
			chunked.Write(data[i:min(len(data), i+step)])
			for p, ok := chunked.Next(); ok; p, ok = chunked.Next() {
				b = append(b, p)
			}
		}
		if len(a) != len(b) {
			t.Fatalf("%d pages whole, %d in chunks of %d", len(a), len(b), step)
		}
		total := 0
		var asm Assembler
		for i := range a {
			if !bytes.Equal(a[i].Raw, b[i].Raw) || a[i].Kind != b[i].Kind || a[i].NewStream != b[i].NewStream {
				t.Fatalf("page %d differs between whole and chunked", i)
			}
			if _, err := ParsePage(a[i].Raw); err != nil {
				t.Fatalf("page %d does not parse again: %v", i, err)
			}
			total += len(a[i].Raw)
			asm.Push(a[i])
		}
		if int64(total)+whole.Skipped()+int64(whole.Buffered()) != int64(len(data)) {
			t.Fatalf("%d bytes in pages + %d skipped + %d buffered != %d", total, whole.Skipped(), whole.Buffered(), len(data))
		}
	})
}

// syntheticStream is an Ogg Opus stream of n 10 ms CELT packets of size
// bytes (about 96 kbit/s at 120), as the speaker's encoder makes.
func syntheticStream(b testing.TB, n, size int) []byte {
	var buf bytes.Buffer
	w, err := NewOpusWriter(&buf, 7, OpusHead{Channels: 1, PreSkip: DefaultPreSkip, InputRate: 48000}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	pkt := make([]byte, size)
	pkt[0] = 30 << 3 // CELT FB 10 ms
	for range n {
		if err := w.WritePacket(pkt); err != nil {
			b.Fatal(err)
		}
	}
	return buf.Bytes()
}

// BenchmarkReader splits one second of the speaker's stream (100 pages)
// read in 4 KiB chunks, as the relay reads ffmpeg's pipe.
func BenchmarkReader(b *testing.B) {
	data := syntheticStream(b, 100, 120)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(&chunked{data: data, n: 4096})
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}

type chunked struct {
	data []byte
	n    int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// BenchmarkOpusWriter writes one second of the microphone's packets (50
// packets of 20 ms at 32 kbit/s).
func BenchmarkOpusWriter(b *testing.B) {
	pkt := make([]byte, 80)
	pkt[0] = 31 << 3 // CELT FB 20 ms
	b.ReportAllocs()
	for b.Loop() {
		w, _ := NewOpusWriter(io.Discard, 1, OpusHead{Channels: 1, PreSkip: DefaultPreSkip}, "bench")
		for range 50 {
			w.WritePacket(pkt)
		}
		w.Close()
	}
}
