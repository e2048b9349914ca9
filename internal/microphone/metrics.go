package microphone

import "github.com/prometheus/client_golang/prometheus"

// Rejection reasons, the values of rejected_total's reason label.
const (
	reasonBusy      = "busy"
	reasonText      = "text"
	reasonTooBig    = "too_big"
	reasonBadFormat = "bad_format"
	reasonOrigin    = "origin"
)

type metrics struct {
	senders    prometheus.Gauge
	bytesIn    prometheus.Counter
	written    prometheus.Counter
	dropped    prometheus.Counter
	convErrors prometheus.Counter
	rejected   *prometheus.CounterVec
}

// newMetrics registers on reg, or on nothing when reg is nil, so tests and
// embedders never share a global registry.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "pulse_sidecar", "microphone"
	m := &metrics{
		senders: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "senders", Help: "Websocket clients currently sending microphone audio (0 or 1)."}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_in_total", Help: "Audio bytes received from websocket clients, in the client's format."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_written_total", Help: "Converted audio bytes written to the PulseAudio pipe source's FIFO."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_dropped_total", Help: "Converted audio bytes dropped because PulseAudio was not reading the FIFO."}),
		convErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "conversion_errors_total", Help: "Non-finite input samples (NaN, Inf) replaced by silence."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rejected_total", Help: "Websocket connections or messages refused, by reason."}, []string{"reason"}),
	}
	// Pre-create the label values so dashboards see zeros, not gaps.
	for _, r := range []string{reasonBusy, reasonText, reasonTooBig, reasonBadFormat, reasonOrigin} {
		m.rejected.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.senders, m.bytesIn, m.written, m.dropped, m.convErrors, m.rejected} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
