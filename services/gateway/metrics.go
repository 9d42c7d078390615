package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// pushLatencyBuckets are the SLO's bounds in seconds (slo/gateway-push-latency.yaml): they must match exactly.
var pushLatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// httpBuckets are the api-page-latency SLO's bounds in seconds.
var httpBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.32, 0.4, 0.58, 1, 2.5, 5}

// knownExchanges get their push-latency series up front so the SLO sees zeros, not absence, before traffic.
var knownExchanges = []string{"XNYS", "XNAS", "XLON"}

// metrics are the gateway's Prometheus series; names and labels are the ones slo/ reads.
type metrics struct {
	registry       *prometheus.Registry
	handshakeOK    prometheus.Counter
	handshakeErr   prometheus.Counter
	handshakeDrain prometheus.Counter
	connections    prometheus.Gauge
	subscriptions  prometheus.Gauge
	messages       prometheus.Counter
	frames         prometheus.Counter
	conflations    prometheus.Counter
	batched        prometheus.Counter
	pushLatency    *prometheus.HistogramVec
	ingestLatency  *prometheus.HistogramVec
	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	kafkaRecords   prometheus.Counter
	kafkaFetches   prometheus.Counter
	kafkaDropped   *prometheus.CounterVec
	kafkaLag       *prometheus.GaugeVec
}

// faultLabel renders the fault flags as the `fault` label: "none" when both are off, else
// "error_rate=F,latency_ms=N" (both parts always, so dashboards can parse it the same way every time).
func faultLabel(errorRate float64, latencyMs int) string {
	if errorRate == 0 && latencyMs == 0 {
		return "none"
	}
	return "error_rate=" + strconv.FormatFloat(errorRate, 'g', -1, 64) + ",latency_ms=" + strconv.Itoa(latencyMs)
}

// newMetrics registers the gateway's series with the const labels version and fault, plus go_* and process_*.
func newMetrics(version, fault string) *metrics {
	reg := prometheus.NewRegistry()
	r := prometheus.WrapRegistererWith(prometheus.Labels{"version": version, "fault": fault}, reg)
	// go_info has a label of its own named version, so the runtime collectors go unwrapped.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handshakes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_ws_handshakes_total", Help: "WebSocket upgrade attempts by result (ok, error, draining).",
	}, []string{"result"})
	m := &metrics{
		registry: reg,
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_connections", Help: "Open WebSocket connections."}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_subscriptions", Help: "Symbol subscriptions across connections."}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_messages_sent_total", Help: "Records written to clients (per record, not per frame)."}),
		frames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_frames_sent_total", Help: "Quote frames written to clients."}),
		conflations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_send_queue_conflations_total",
			Help: "Pending records replaced by a newer one of the same symbol for a slow client."}),
		batched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_send_queue_batched_total",
			Help: "Pending records replaced by a newer one of the same symbol while the connection's batch window (batch_ms) was open."}),
		pushLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gateway_push_latency_seconds", Help: "Exchange timestamp to WebSocket write, seconds.",
			Buckets: pushLatencyBuckets}, []string{"exchange"}),
		ingestLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_ingest_latency_seconds",
			Help:    "Exchange timestamp to the record received from Kafka (the pipeline's share of push latency), seconds.",
			Buckets: pushLatencyBuckets}, []string{"exchange"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "REST requests by route and status code."}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "REST request duration, seconds.",
			Buckets: httpBuckets}, []string{"route"}),
		kafkaRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_kafka_records_total", Help: "Records consumed from the topic."}),
		kafkaFetches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_kafka_fetches_total",
			Help: "Polls that returned records (records per fetch = records_total / fetches_total: how batched)."}),
		kafkaDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_kafka_records_dropped_total",
			Help: "Consumed records not fanned out: stale (seq not above the last seen) or malformed."},
			[]string{"reason"}),
		kafkaLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_kafka_lag_records", Help: "High watermark minus next offset to consume, per partition."},
			[]string{"partition"}),
	}
	m.handshakeOK = handshakes.WithLabelValues("ok")
	m.handshakeErr = handshakes.WithLabelValues("error")
	m.handshakeDrain = handshakes.WithLabelValues("draining")
	for _, ex := range knownExchanges {
		m.pushLatency.WithLabelValues(ex)
		m.ingestLatency.WithLabelValues(ex)
	}
	m.kafkaDropped.WithLabelValues("stale")
	m.kafkaDropped.WithLabelValues("malformed")
	r.MustRegister(handshakes, m.connections, m.subscriptions, m.messages, m.frames, m.conflations, m.batched, m.pushLatency, m.ingestLatency,
		m.httpRequests, m.httpDuration, m.kafkaRecords, m.kafkaFetches, m.kafkaDropped, m.kafkaLag)
	return m
}
