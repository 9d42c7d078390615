package main

import (
	"encoding/json"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// config is the parsed command line.
type config struct {
	listen          string
	brokers         []string
	topic           string
	version         string
	replica         string
	faultErrorRate  float64       // share of handshakes and REST requests answered 503
	faultLatency    time.Duration // added to every quotes frame and REST request
	drainTimeout    time.Duration
	reconnectHintMs int
	maxSymbols      int
	writeTimeout    time.Duration
	sendBuffer      int // bytes the kernel may queue per WebSocket before writes wait (0: its autotuning)
	warmRecords     int64
}

// server is the gateway's HTTP face: WebSocket upgrades, REST quotes, admin drain, health and metrics.
type server struct {
	cfg      config
	m        *metrics
	hub      *hub
	kafka    *consumer
	upgrader websocket.Upgrader
	draining atomic.Bool
	open     atomic.Int64 // open WebSocket connections, for the drain to wait on
}

func newServer(cfg config, m *metrics, h *hub, k *consumer) *server {
	s := &server{cfg: cfg, m: m, hub: h, kafka: k}
	s.upgrader = websocket.Upgrader{
		ReadBufferSize: 1024,
		// Idle connections hold no write buffer: it is taken from the pool per frame.
		WriteBufferSize: 8 << 10,
		WriteBufferPool: &sync.Pool{},
		// Market data is public and the gateway sits behind HAProxy: any origin may connect.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return s
}

// routes returns the HTTP handler for every route of the gateway.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.handleWS)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.Handle("GET /v1/quotes", s.instrument("/v1/quotes", http.HandlerFunc(s.handleQuotes)))
	mux.Handle("POST /admin/drain", s.instrument("/admin/drain", http.HandlerFunc(s.handleDrain)))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.registry, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// injectFault reports whether this request is one of the --fault-error-rate share to fail.
func (s *server) injectFault() bool {
	return s.cfg.faultErrorRate > 0 && rand.Float64() < s.cfg.faultErrorRate
}

func (s *server) handleWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		// Not an error of the service: HAProxy retries the handshake on another replica (retry-on 503).
		s.m.handshakeDrain.Inc()
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "draining"})
		return
	}
	if s.injectFault() {
		s.m.handshakeErr.Inc()
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "injected fault"})
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil) // on failure it has answered the client already
	if err != nil {
		s.m.handshakeErr.Inc()
		return
	}
	s.m.handshakeOK.Inc()
	s.m.connections.Inc()
	s.open.Add(1)
	if tcp, ok := ws.NetConn().(*net.TCPConn); ok && s.cfg.sendBuffer > 0 {
		// A bounded kernel buffer makes a client that stops reading wait on its writer soon, where its
		// records are conflated (it gets the latest quotes when it reads again), instead of the kernel
		// queueing megabytes of stale ones for it.
		_ = tcp.SetWriteBuffer(s.cfg.sendBuffer)
	}
	c := newWSConn(s, ws)
	c.sendControl(helloFrame(s.cfg.replica, s.cfg.version, time.Now().UnixNano()), nil)
	s.hub.attach(c)
	if s.draining.Load() {
		// Upgraded while the drain was listing connections: close it the same way.
		c.closeWith(websocket.CloseServiceRestart, s.reconnectReason(), s.cfg.drainTimeout)
	}
	c.run()
}

func (s *server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"status": "ok", "service": "gateway", "version": s.cfg.version, "replica": s.cfg.replica,
		"kafka": s.kafka.fetchState()})
}

func (s *server) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	reason := ""
	if s.draining.Load() {
		reason = "draining"
	} else {
		reason = s.kafka.notReady()
	}
	if reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "version": s.cfg.version, "replica": s.cfg.replica})
}

// parseSymbols splits "A,B" into distinct non-empty symbols, in order.
func parseSymbols(list string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (s *server) handleQuotes(w http.ResponseWriter, r *http.Request) {
	if s.cfg.faultLatency > 0 {
		select {
		case <-time.After(s.cfg.faultLatency):
		case <-r.Context().Done():
			return
		}
	}
	if s.injectFault() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "injected fault"})
		return
	}
	symbols := parseSymbols(r.URL.Query().Get("symbols"))
	if len(symbols) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "symbols=A,B,... is required"})
		return
	}
	if len(symbols) > s.cfg.maxSymbols {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error": "too many symbols: at most " + strconv.Itoa(s.cfg.maxSymbols)})
		return
	}
	found, missing := s.hub.quotes(symbols)
	writeJSON(w, http.StatusOK, map[string]any{"quotes": rawRecords(found), "missing": missing})
}

func (s *server) handleDrain(w http.ResponseWriter, r *http.Request) {
	f, err := strconv.ParseFloat(r.URL.Query().Get("fraction"), 64)
	if err != nil || f < 0 || f > 1 || math.IsNaN(f) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "fraction=F with 0 <= F <= 1 is required"})
		return
	}
	conns := s.hub.connections()
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	n := int(math.Round(f * float64(len(conns))))
	closed := 0
	for _, c := range conns[:n] {
		if c.closeWith(websocket.CloseServiceRestart, s.reconnectReason(), s.cfg.drainTimeout) {
			closed++
		}
	}
	slog.Info("admin drain", "fraction", f, "closed", closed, "open", len(conns))
	writeJSON(w, http.StatusOK, map[string]int{"closed": closed})
}

// reconnectReason is the close reason {"reconnect_after_ms":N}: the hint plus up to half of it again of
// jitter, so clients of a drained replica do not all reconnect in the same instant.
func (s *server) reconnectReason() string {
	hint := s.cfg.reconnectHintMs
	return `{"reconnect_after_ms":` + strconv.Itoa(hint+rand.IntN(hint/2+1)) + `}`
}

// drain closes every connection with 1012 and waits for them to go, at most --drain-timeout.
func (s *server) drain() {
	s.draining.Store(true)
	conns := s.hub.connections()
	slog.Info("draining", "connections", len(conns), "timeout", s.cfg.drainTimeout)
	for _, c := range conns {
		// In parallel: a stuck client's close frame may wait up to --write-timeout.
		go c.closeWith(websocket.CloseServiceRestart, s.reconnectReason(), s.cfg.drainTimeout)
	}
	deadline := time.Now().Add(s.cfg.drainTimeout)
	for s.open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.open.Load(); n > 0 {
		slog.Warn("drain timeout: closing the remaining connections", "open", n)
		return
	}
	slog.Info("drained: every connection closed")
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// instrument counts and times a REST route (http_requests_total, http_request_duration_seconds).
func (s *server) instrument(route string, h http.Handler) http.Handler {
	duration := s.m.httpDuration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		duration.Observe(time.Since(start).Seconds())
		s.m.httpRequests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
	})
}
