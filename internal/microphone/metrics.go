package microphone

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Rejection reasons, the values of rejected_total's reason label: what a
// sender did wrong after the upgrade. Refusals before it are the websocket
// layer's refused_total.
const (
	reasonText   = "text"
	reasonTooBig = "too_big"
)

// Sanitising reasons, the values of samples_sanitized_total's reason label.
const (
	sanitizedNonFinite = "non_finite"
	sanitizedClamped   = "clamped"
)

type metrics struct {
	senders   prometheus.Gauge
	replaced  prometheus.Counter
	bytesIn   prometheus.Counter
	written   prometheus.Counter
	dropped   prometheus.Counter
	sanitized *prometheus.CounterVec
	rejected  *prometheus.CounterVec
}

// newMetrics registers on reg, or on nothing when reg is nil, so tests and
// embedders never share a global registry.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "pulse_sidecar", "microphone"
	m := &metrics{
		senders: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "senders", Help: "Websocket clients currently sending microphone audio (0 or 1)."}),
		replaced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "senders_replaced_total", Help: "Senders closed with 4001 because a newer sender took the microphone over."}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_in_total", Help: "Audio bytes received from websocket clients, in the client's format."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_written_total", Help: "Converted audio bytes written to the PulseAudio pipe source's FIFO."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_dropped_total", Help: "Converted audio bytes dropped because PulseAudio was not reading the FIFO."}),
		sanitized: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "samples_sanitized_total", Help: "Samples replaced by 0 (non_finite: NaN, Inf) or clamped to [-1, 1] (clamped)."}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rejected_total", Help: "Senders closed for what they sent, by reason."}, []string{"reason"}),
	}
	// Pre-create the label values so dashboards see zeros, not gaps.
	for _, r := range []string{reasonText, reasonTooBig} {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{sanitizedNonFinite, sanitizedClamped} {
		m.sanitized.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.senders, m.replaced, m.bytesIn, m.written, m.dropped, m.sanitized, m.rejected} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}
