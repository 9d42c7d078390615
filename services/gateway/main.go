// Command openbell-gateway is the platform's market-data gateway: it consumes the `enriched` topic and fans
// each quote out over WebSocket to the clients subscribed to its symbol, and answers REST quote lookups.
// The protocol is in README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func parseFlags(args []string) (config, error) {
	host, _ := os.Hostname()
	var cfg config
	var kafka string
	var latencyMs int
	fs := flag.NewFlagSet("openbell-gateway", flag.ContinueOnError)
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:8080", "HOST:PORT for HTTP and WebSocket")
	fs.StringVar(&kafka, "kafka", "127.0.0.1:9092", "Kafka bootstrap servers, HOST:PORT[,...]")
	fs.StringVar(&cfg.topic, "topic", "enriched", "topic of enriched quotes")
	fs.StringVar(&cfg.version, "version", "stable", "the `version` label on every series")
	fs.StringVar(&cfg.replica, "replica", host, "replica name, shown in /healthz")
	fs.Float64Var(&cfg.faultErrorRate, "fault-error-rate", 0, "fault injection: share (0..1) of handshakes and REST requests answered 503")
	fs.IntVar(&latencyMs, "fault-latency-ms", 0, "fault injection: milliseconds added to each frame and REST request")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", 10*time.Second, "how long a drain waits for clients to close")
	fs.IntVar(&cfg.reconnectHintMs, "reconnect-hint-ms", 1000, "reconnect_after_ms hint in drain close frames (plus jitter)")
	fs.IntVar(&cfg.maxSymbols, "max-symbols", 1000, "symbols per connection (and per REST request)")
	fs.DurationVar(&cfg.writeTimeout, "write-timeout", 5*time.Second, "a client that cannot take a write this long is closed")
	fs.IntVar(&cfg.sendBuffer, "send-buffer", 64<<10, "bytes the kernel may queue per WebSocket before a slow client's records are conflated (0: the kernel's autotuning)")
	fs.Int64Var(&cfg.warmRecords, "warm-records", 300, "records per partition read before the end at start, to warm the quote cache")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	for _, b := range strings.Split(kafka, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.brokers = append(cfg.brokers, b)
		}
	}
	cfg.faultLatency = time.Duration(latencyMs) * time.Millisecond
	switch {
	case len(cfg.brokers) == 0:
		return cfg, errors.New("--kafka is empty")
	case cfg.faultErrorRate < 0 || cfg.faultErrorRate > 1:
		return cfg, errors.New("--fault-error-rate must be within 0..1")
	case latencyMs < 0 || cfg.reconnectHintMs < 0 || cfg.warmRecords < 0:
		return cfg, errors.New("--fault-latency-ms, --reconnect-hint-ms and --warm-records must be >= 0")
	case cfg.maxSymbols < 1 || cfg.writeTimeout <= 0 || cfg.drainTimeout < 0 || cfg.sendBuffer < 0:
		return cfg, errors.New("--max-symbols and --write-timeout must be positive, --drain-timeout and --send-buffer >= 0")
	}
	return cfg, nil
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "openbell-gateway:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		slog.Error("gateway failed", "err", err)
		os.Exit(1)
	}
}

// run serves until SIGTERM or SIGINT, then drains (readiness 503, close frames 1012, wait) and returns.
func run(cfg config) error {
	m := newMetrics(cfg.version, faultLabel(cfg.faultErrorRate, int(cfg.faultLatency/time.Millisecond)))
	h := newHub(m)
	k, err := newConsumer(cfg.brokers, cfg.topic, cfg.warmRecords, m)
	if err != nil {
		return err
	}
	defer k.close()
	srv := newServer(cfg, m, h, k)
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{Handler: srv.routes(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	consumed := make(chan struct{})
	go func() { k.run(ctx, h.publish); close(consumed) }()
	slog.Info("gateway listening", "listen", ln.Addr().String(), "kafka", cfg.brokers, "topic", cfg.topic,
		"version", cfg.version, "replica", cfg.replica)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-sigs:
		slog.Info("signal: draining", "signal", sig.String())
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}
	srv.drain()
	shutdown, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	_ = httpSrv.Shutdown(shutdown) // hijacked WebSockets are ours, already closed by the drain
	cancel()
	<-consumed
	slog.Info("gateway stopped")
	return nil
}
