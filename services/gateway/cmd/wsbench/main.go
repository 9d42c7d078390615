// Command wsbench is the gateway's fan-out benchmark: it opens --clients WebSocket connections at
// --connect-rate, subscribes each to --symbols-per-client symbols drawn by weight from --symbols-file, and
// after --warmup measures delivered records/s and push latency (now - ts_ns at receipt; same host clock).
// It also checks delivery: per-symbol seq gaps not explained by "skipped", fseq gaps, records of symbols
// the client did not subscribe to. It prints one JSON object.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// weighted is one symbol of the universe and its draw weight.
type weighted struct {
	symbol string
	weight float64
}

// loadSymbols reads "SYMBOL [WEIGHT]" lines (weight defaults to 1; blank lines and # comments skipped).
func loadSymbols(path string) ([]weighted, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []weighted
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		w := 1.0
		if len(fields) > 1 {
			if w, err = strconv.ParseFloat(fields[1], 64); err != nil || w <= 0 {
				return nil, fmt.Errorf("%s: bad weight in %q", path, sc.Text())
			}
		}
		out = append(out, weighted{fields[0], w})
	}
	return out, sc.Err()
}

// draw picks k distinct symbols with probability proportional to weight (Efraimidis-Spirakis: keep the k
// largest u^(1/w)).
func draw(universe []weighted, k int, rng *rand.Rand) []string {
	type keyed struct {
		key float64
		sym string
	}
	keys := make([]keyed, len(universe))
	for i, s := range universe {
		keys[i] = keyed{math.Pow(rng.Float64(), 1/s.weight), s.symbol}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].key > keys[j].key })
	out := make([]string, 0, k)
	for _, kk := range keys[:min(k, len(keys))] {
		out = append(out, kk.sym)
	}
	return out
}

// stats are the run's totals, updated by every client.
type stats struct {
	connected, connectErrors, disconnects       atomic.Int64
	records, measured, frames, measuredFrames   atomic.Int64
	seqGaps, fseqGaps, duplicates, unsubscribed atomic.Int64
	skipped, serverErrors                       atomic.Int64
	latency                                     histogram
	clientDelay                                 histogram // how late a 10 ms timer fires here: this process's CPU starvation
}

// watchDelay records how late a 10 ms timer wakes this process while measuring: on a shared machine the client's
// own scheduling delay is part of every latency it measures, and this says how much (like k6's lateness).
func watchDelay(ctx context.Context, st *stats, from time.Time) {
	const every = 10 * time.Millisecond
	next := time.Now().Add(every)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		now := time.Now()
		if now.After(from) {
			st.clientDelay.record(now.Sub(next).Microseconds())
		}
		next = now.Add(every)
	}
}

// frame is any server -> client message; fields not in a given type stay empty.
type frame struct {
	Type     string           `json:"type"`
	Fseq     int64            `json:"fseq"`
	Quotes   []quote          `json:"quotes"`
	Snapshot []quote          `json:"snapshot"`
	Skipped  map[string]int64 `json:"skipped"`
}

type quote struct {
	Symbol  string `json:"symbol"`
	Seq     int64  `json:"seq"`
	Session int64  `json:"session"`
	TsNs    int64  `json:"ts_ns"`
}

// mark is where a symbol's stream stands: seq counts within a feed session, and a restarted feed opens a
// newer session whose seq starts again at 1.
type mark struct{ session, seq int64 }

// client runs one connection until ctx ends.
func client(ctx context.Context, url string, symbols []string, st *stats, measureFrom time.Time, logGaps bool) {
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 16 << 10, WriteBufferSize: 4 << 10}
	ws, _, err := dialer.DialContext(ctx, url, nil)
	if err != nil {
		st.connectErrors.Add(1)
		return
	}
	st.connected.Add(1)
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() {
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	})
	defer stop()
	sub, _ := json.Marshal(map[string]any{"op": "subscribe", "symbols": symbols})
	if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
		st.disconnects.Add(1)
		return
	}
	last := make(map[string]mark, len(symbols))
	for _, s := range symbols {
		last[s] = mark{}
	}
	var f frame
	var fseq int64
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			if ctx.Err() == nil {
				st.disconnects.Add(1)
			}
			return
		}
		now := time.Now()
		f.Quotes, f.Snapshot, f.Skipped, f.Type = f.Quotes[:0], f.Snapshot[:0], nil, ""
		if err := json.Unmarshal(data, &f); err != nil {
			st.serverErrors.Add(1)
			continue
		}
		switch f.Type {
		case "subscribed":
			for _, q := range f.Snapshot {
				if m := last[q.Symbol]; q.Session > m.session || (q.Session == m.session && q.Seq > m.seq) {
					last[q.Symbol] = mark{q.Session, q.Seq}
				}
			}
			continue
		case "quotes":
		case "error":
			st.serverErrors.Add(1)
			continue
		default:
			continue
		}
		if f.Fseq != fseq+1 {
			st.fseqGaps.Add(1)
		}
		fseq = f.Fseq
		measuring := !now.Before(measureFrom)
		nowNs := now.UnixNano()
		for _, q := range f.Quotes {
			m, ok := last[q.Symbol]
			prev := m.seq
			if q.Session > m.session {
				prev = 0 // a new feed session: its seq starts at 1, nothing before it is owed
			}
			switch {
			case !ok:
				st.unsubscribed.Add(1)
				continue
			case q.Session < m.session || (prev > 0 && q.Seq <= prev):
				st.duplicates.Add(1)
				continue
			case prev > 0:
				if gap := q.Seq - prev - 1 - f.Skipped[q.Symbol]; gap > 0 {
					st.seqGaps.Add(gap)
					if logGaps {
						fmt.Fprintf(os.Stderr, "gap %s prev=%d seq=%d skipped=%d fseq=%d n=%d at=%s\n", q.Symbol, prev, q.Seq, f.Skipped[q.Symbol], f.Fseq, len(f.Quotes), now.Format("15:04:05.000"))
					}
				}
			}
			last[q.Symbol] = mark{q.Session, q.Seq}
			if measuring {
				st.latency.record((nowNs - q.TsNs) / 1000)
			}
		}
		for _, k := range f.Skipped {
			st.skipped.Add(k)
		}
		st.records.Add(int64(len(f.Quotes)))
		st.frames.Add(1)
		if measuring {
			st.measured.Add(int64(len(f.Quotes)))
			st.measuredFrames.Add(1)
		}
	}
}

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/ws", "gateway WebSocket URL")
	clients := flag.Int("clients", 1000, "connections to open")
	perClient := flag.Int("symbols-per-client", 50, "symbols each client subscribes to")
	symbolsFile := flag.String("symbols-file", "", "one symbol per line, optional second column weight (required)")
	duration := flag.Duration("duration", 30*time.Second, "whole run, warmup included")
	warmup := flag.Duration("warmup", 5*time.Second, "time from the start before measuring")
	rate := flag.Float64("connect-rate", 200, "connections opened per second")
	seed := flag.Uint64("seed", 1, "seed for the symbol draw")
	logGaps := flag.Bool("log-gaps", false, "print each seq gap to stderr")
	flag.Parse()
	if err := run(*url, *clients, *perClient, *symbolsFile, *duration, *warmup, *rate, *seed, *logGaps); err != nil {
		fmt.Fprintln(os.Stderr, "wsbench:", err)
		os.Exit(2)
	}
}

func run(url string, clients, perClient int, symbolsFile string, duration, warmup time.Duration,
	rate float64, seed uint64, logGaps bool) error {
	if symbolsFile == "" {
		return errors.New("--symbols-file is required")
	}
	if clients < 1 || perClient < 1 || rate <= 0 || warmup >= duration {
		return errors.New("need --clients, --symbols-per-client, --connect-rate > 0 and --warmup < --duration")
	}
	universe, err := loadSymbols(symbolsFile)
	if err != nil {
		return err
	}
	if len(universe) == 0 {
		return errors.New("no symbols in " + symbolsFile)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(duration))
	defer cancel()
	var st stats
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	go watchDelay(ctx, &st, start.Add(warmup))
	for i := 0; i < clients && ctx.Err() == nil; i++ {
		syms := draw(universe, perClient, rng)
		wg.Add(1)
		go func() { defer wg.Done(); client(ctx, url, syms, &st, start.Add(warmup), logGaps) }()
		select {
		case <-time.After(interval):
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	wg.Wait()
	measured := (duration - warmup).Seconds()
	ms := func(us uint64) float64 { return math.Round(float64(us)/10) / 100 }
	out := map[string]any{
		"url": url, "clients": clients, "symbols_per_client": perClient, "universe": len(universe),
		"clients_connected": st.connected.Load(), "connect_errors": st.connectErrors.Load(),
		"disconnects": st.disconnects.Load(), "duration_s": duration.Seconds(), "measured_s": measured,
		"records_received": st.records.Load(), "records_measured": st.measured.Load(),
		"records_per_s":  math.Round(float64(st.measured.Load()) / measured),
		"frames_per_s":   math.Round(float64(st.measuredFrames.Load()) / measured),
		"latency_p50_ms": ms(st.latency.quantile(0.50)), "latency_p90_ms": ms(st.latency.quantile(0.90)),
		"latency_p99_ms": ms(st.latency.quantile(0.99)), "latency_max_ms": ms(st.latency.max.Load()),
		"seq_gaps": st.seqGaps.Load(), "fseq_gaps": st.fseqGaps.Load(), "duplicates": st.duplicates.Load(),
		"unsubscribed_records": st.unsubscribed.Load(), "skipped_conflated": st.skipped.Load(),
		"server_errors":       st.serverErrors.Load(),
		"client_delay_p99_ms": ms(st.clientDelay.quantile(0.99)), "client_delay_max_ms": ms(st.clientDelay.max.Load()),
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	return nil
}
