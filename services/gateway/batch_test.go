package main

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
)

// quotesFrame is the part of a quotes frame the batching tests read.
type quotesFrame struct {
	Type    string            `json:"type"`
	Fseq    uint64            `json:"fseq"`
	N       int               `json:"n"`
	Quotes  []json.RawMessage `json:"quotes"`
	Skipped map[string]int    `json:"skipped"`
}

// liveRec is a record as the consumer makes it: with its push-latency observer resolved.
func liveRec(m *metrics, sym string, seq int64) *Record {
	r := rec(sym, seq)
	r.TsNs = time.Now().UnixNano()
	r.latency = m.pushLatency.WithLabelValues(r.Exchange)
	return r
}

// dialGateway serves a hub over a real WebSocket (httptest) and subscribes one client with the given
// subscribe frame; it returns the client after the hello and subscribed replies.
func dialGateway(t *testing.T, subscribe string) (*hub, *metrics, *websocket.Conn) {
	t.Helper()
	m := newMetrics("test", "none")
	h := newHub(m)
	srv := newServer(config{maxSymbols: 100, writeTimeout: 5 * time.Second, drainTimeout: time.Second}, m, h, nil)
	ts := httptest.NewServer(srv.routes())
	t.Cleanup(ts.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	if err := ws.WriteMessage(websocket.TextMessage, []byte(subscribe)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"type":"hello"`, `"type":"subscribed"`} {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := ws.ReadMessage()
		if err != nil || !strings.Contains(string(data), want) {
			t.Fatalf("expected %s, got %s (%v)", want, data, err)
		}
	}
	return h, m, ws
}

func readQuotes(t *testing.T, ws *websocket.Conn) (quotesFrame, time.Time) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var f quotesFrame
	if err := json.Unmarshal(data, &f); err != nil || f.Type != "quotes" {
		t.Fatalf("not a quotes frame: %s (%v)", data, err)
	}
	if f.N != len(f.Quotes) {
		t.Fatalf("n = %d but %d records in %s", f.N, len(f.Quotes), data)
	}
	return f, time.Now()
}

func TestBatchWindowSpacesFramesAndKeepsEveryUpdateAccountedFor(t *testing.T) {
	const window = 150 * time.Millisecond
	h, m, ws := dialGateway(t, `{"op":"subscribe","symbols":["A","B"],"batch_ms":150}`)
	// After a quiet spell the first record goes at once.
	start := time.Now()
	h.publish([]*Record{liveRec(m, "A", 1)})
	first, at := readQuotes(t, ws)
	if first.Fseq != 1 || first.N != 1 || at.Sub(start) > window/2 {
		t.Fatalf("first frame %+v after %v: a record after a quiet spell must not wait", first, at.Sub(start))
	}
	// Records published inside the window wait for its end and ride one frame; a replaced one is counted.
	h.publish([]*Record{liveRec(m, "A", 2)})
	h.publish([]*Record{liveRec(m, "B", 1)})
	h.publish([]*Record{liveRec(m, "A", 3)})
	second, at2 := readQuotes(t, ws)
	if gap := at2.Sub(at); gap < window-10*time.Millisecond {
		t.Fatalf("second frame %v after the first: the window is %v", gap, window)
	}
	if second.Fseq != 2 || second.N != 2 || second.Skipped["A"] != 1 {
		t.Fatalf("second frame %+v: want A and B, A's seq 2 counted as skipped", second)
	}
	if got := testCounter(m.batched); got != 1 {
		t.Fatalf("gateway_send_queue_batched_total = %v, want 1 (the replaced A)", got)
	}
	if got := testCounter(m.conflations); got != 0 {
		t.Fatalf("a batched replacement is not a slow client: conflations = %v", got)
	}
}

func TestNoBatchWindowSendsPerPublish(t *testing.T) {
	h, m, ws := dialGateway(t, `{"op":"subscribe","symbols":["A"]}`)
	for seq := int64(1); seq <= 3; seq++ {
		start := time.Now()
		h.publish([]*Record{liveRec(m, "A", seq)})
		f, at := readQuotes(t, ws)
		if f.Fseq != uint64(seq) || f.N != 1 || at.Sub(start) > 100*time.Millisecond {
			t.Fatalf("frame %+v after %v: without batch_ms every publish is sent at once", f, at.Sub(start))
		}
	}
}

func TestBatchMsIsValidated(t *testing.T) {
	for _, s := range []string{`{"op":"subscribe","symbols":["A"],"batch_ms":-1}`,
		`{"op":"subscribe","symbols":["A"],"batch_ms":1001}`, `{"op":"unsubscribe","symbols":["A"],"batch_ms":5}`,
		`{"op":"ping","batch_ms":5}`} {
		if _, err := parseClientMsg([]byte(s)); err == nil || !strings.Contains(err.Error(), "batch_ms") {
			t.Errorf("%s: expected a batch_ms error, got %v", s, err)
		}
	}
	m, err := parseClientMsg([]byte(`{"op":"subscribe","symbols":["A"],"batch_ms":25}`))
	if err != nil || m.BatchMs == nil || *m.BatchMs != 25 {
		t.Fatalf("batch_ms 25: %+v %v", m, err)
	}
}

func testCounter(c interface{ Write(*dto.Metric) error }) float64 {
	var out dto.Metric
	_ = c.Write(&out)
	return out.GetCounter().GetValue()
}
