package speaker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const metricPrefix = "pulse_sidecar_speaker_"

// metrics are the relay's counters. They exist even without a Registerer so
// that the code counting never has to ask whether anyone is listening.
type metrics struct {
	listeners       prometheus.Gauge
	bytesOut        prometheus.Counter
	packetsOut      prometheus.Counter
	packetsIn       prometheus.Counter
	skippedBytes    prometheus.Counter
	slowClosed      prometheus.Counter
	encoderStarts   prometheus.Counter
	encoderRestarts prometheus.Counter
	encoderStalls   prometheus.Counter
	resyncs         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: metricPrefix + name, Help: help})
	}
	m := &metrics{
		listeners: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricPrefix + "listeners",
			Help: "Websocket listeners currently connected.",
		}),
		bytesOut:        counter("bytes_out_total", "Bytes written to listeners."),
		packetsOut:      counter("packets_out_total", "TS packets written to listeners, summed over listeners."),
		packetsIn:       counter("packets_in_total", "TS packets read from the FIFO."),
		skippedBytes:    counter("skipped_bytes_total", "Bytes dropped from slow listeners' queues to skip them ahead to live audio."),
		slowClosed:      counter("slow_listeners_closed_total", "Listeners closed because they stayed behind too long."),
		encoderStarts:   counter("encoder_starts_total", "Encoder processes started."),
		encoderRestarts: counter("encoder_restarts_total", "Encoder processes started again after dying while listeners were connected."),
		encoderStalls:   counter("encoder_stalls_total", "Encoders restarted because no stream came from them for --encoder-stall with listeners connected."),
		resyncs:         counter("resyncs_total", "Times the FIFO stream lost TS packet alignment."),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.listeners, m.bytesOut, m.packetsOut, m.packetsIn, m.skippedBytes,
		m.slowClosed, m.encoderStarts, m.encoderRestarts, m.encoderStalls, m.resyncs,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}
