package wsserver

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	connections prometheus.Gauge
	refused     *prometheus.CounterVec
}

// newMetrics names the metrics after the service, so each port's figures
// sit beside the rest of its relay's (pulse_sidecar_speaker_...).
func newMetrics(service string, reg prometheus.Registerer) (*metrics, error) {
	prefix := "pulse_sidecar_" + service + "_"
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: prefix + "connections",
			Help: "TCP connections open on the port, websockets and plain requests alike.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "refused_total",
			Help: "Connections and websocket requests refused before the upgrade, by reason.",
		}, []string{"reason"}),
	}
	// Zeros, not gaps, on dashboards.
	for _, r := range []string{ReasonConnections, ReasonSessions, ReasonOrigin, ReasonAuth, ReasonParams, ReasonStopping} {
		m.refused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connections, m.refused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}
