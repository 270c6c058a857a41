package forward

import "github.com/VictoriaMetrics/metrics"

// addMetrics creates the forwarder's metrics: rows forwarded, rows
// converted, failed attempts, lag in events and seconds, whether
// PostgreSQL is connected, and the position.
func (f *Forwarder) addMetrics() {
	s := f.set
	f.forwarded = s.NewCounter("gocolytics_forward_rows_total")
	f.converted = s.NewCounter("gocolytics_forward_converted_rows_total")
	f.errs = s.NewCounter("gocolytics_forward_errors_total")
	s.NewGauge("gocolytics_forward_lag_events", func() float64 { return float64(f.Status().LagEvents) })
	s.NewGauge("gocolytics_forward_lag_seconds", func() float64 { return f.Status().LagSeconds })
	s.NewGauge("gocolytics_forward_position", func() float64 { return float64(f.Status().Position) })
	s.NewGauge("gocolytics_forward_connected", func() float64 {
		if f.Status().Connected {
			return 1
		}
		return 0
	})
}

// Metrics returns the forwarder's metrics, for /metrics.
func (f *Forwarder) Metrics() *metrics.Set { return f.set }
