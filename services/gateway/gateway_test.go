package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func rec(sym string, seq int64) *Record {
	raw, _ := json.Marshal(map[string]any{"symbol": sym, "seq": seq, "exchange": "XNYS", "ts_ns": 1})
	return &Record{Symbol: sym, Seq: seq, Exchange: "XNYS", TsNs: 1, Raw: raw}
}

func TestPendingSetConflatesPerSymbol(t *testing.T) {
	p := newPendingSet()
	if p.put(rec("A", 1)) || p.put(rec("B", 1)) {
		t.Fatal("first record of a symbol must not conflate")
	}
	if !p.put(rec("A", 2)) || !p.put(rec("A", 3)) {
		t.Fatal("a newer record of a pending symbol must replace it")
	}
	if p.len() != 2 || p.recs[0].Seq != 3 || p.recs[0].Symbol != "A" || p.skipped["A"] != 2 || len(p.skipped) != 1 {
		t.Fatalf("got %d recs, first %+v, skipped %v", p.len(), p.recs[0], p.skipped)
	}
	p.drop([]string{"A", "Z"})
	if p.len() != 1 || p.recs[0].Symbol != "B" || p.index["B"] != 0 || len(p.skipped) != 0 {
		t.Fatalf("drop: %d recs, index %v, skipped %v", p.len(), p.index, p.skipped)
	}
	p.reset()
	if p.len() != 0 || len(p.index) != 0 || p.put(rec("B", 2)) {
		t.Fatal("reset must empty the set")
	}
}

func TestRegistryAddRemove(t *testing.T) {
	r := newRegistry[int]()
	r.add("A", 1)
	r.add("A", 2)
	r.add("B", 1)
	if got := r.subscribers("A"); len(got) != 2 || r.total != 3 {
		t.Fatalf("subscribers(A) = %v, total %d", got, r.total)
	}
	if !r.remove("A", 1) || r.remove("A", 1) || r.remove("C", 1) {
		t.Fatal("remove must report whether the subscription existed")
	}
	if got := r.subscribers("A"); len(got) != 1 || got[0] != 2 {
		t.Fatalf("after remove subscribers(A) = %v", got)
	}
	r.remove("A", 2)
	if _, ok := r.subs["A"]; ok || r.total != 1 {
		t.Fatal("an empty symbol must leave the map")
	}
}

func TestParseClientMsg(t *testing.T) {
	ok := []string{`{"op":"subscribe","symbols":["AAPL","MSFT"]}`, `{"op":"unsubscribe","symbols":["X"]}`,
		`{"op":"ping","id":7}`, `{"op":"ping"}`}
	for _, s := range ok {
		if _, err := parseClientMsg([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := []string{`nope`, `[]`, `{}`, `{"op":"dance"}`, `{"op":"subscribe"}`, `{"op":"subscribe","symbols":[]}`,
		`{"op":"subscribe","symbols":[""]}`, `{"op":"subscribe","symbols":"AAPL"}`,
		`{"op":"subscribe","symbols":["` + strings.Repeat("X", 33) + `"]}`}
	for _, s := range bad {
		if _, err := parseClientMsg([]byte(s)); err == nil {
			t.Errorf("%s: expected an error", s)
		}
	}
	m, _ := parseClientMsg([]byte(`{"op":"ping","id":"abc"}`))
	if string(pongReply(m.ID, 5)) != `{"type":"pong","id":"abc","server_ns":5}` {
		t.Errorf("pong = %s", pongReply(m.ID, 5))
	}
}

func TestQuotesFrameIsValidJSON(t *testing.T) {
	recs := []*Record{rec("A", 3), rec(`Q"\`, 1)}
	b := appendQuotesFrame(nil, 42, recs, map[string]int{"A": 2, `Q"\` + "\n": 1})
	var f struct {
		Type    string           `json:"type"`
		Fseq    uint64           `json:"fseq"`
		Quotes  []map[string]any `json:"quotes"`
		Skipped map[string]int   `json:"skipped"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if f.Type != "quotes" || f.Fseq != 42 || len(f.Quotes) != 2 || f.Quotes[1]["symbol"] != `Q"\` ||
		f.Skipped["A"] != 2 || f.Skipped["Q\"\\\n"] != 1 {
		t.Fatalf("decoded %+v", f)
	}
	if !strings.HasPrefix(string(b), `{"type":"quotes","fseq":42,"n":2,"quotes":[`) {
		t.Fatalf("fseq and n must lead the frame (clients read them without parsing): %s", b)
	}
	if b := appendQuotesFrame(nil, 1, recs[:1], nil); strings.Contains(string(b), "skipped") {
		t.Fatalf("empty skipped must be left out: %s", b)
	}
	if n := testing.AllocsPerRun(100, func() { _ = appendQuotesFrame(make([]byte, 0, 0), 1, recs, nil) }); n > 3 {
		t.Logf("allocs with a fresh buffer: %v", n)
	}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = appendQuotesFrame(buf[:0], 1, recs, nil) }); n != 0 {
		t.Fatalf("a reused buffer must not allocate, got %v allocs", n)
	}
}

func TestParseRecord(t *testing.T) {
	r, err := parseRecord([]byte("AAPL"), []byte(`{"seq": 5, "exchange": "XNAS", "ts_ns": 17, "vwap": 1.5}`))
	if err != nil || r.Symbol != "AAPL" || r.Seq != 5 || r.Exchange != "XNAS" || r.TsNs != 17 ||
		string(r.Raw) != `{"seq":5,"exchange":"XNAS","ts_ns":17,"vwap":1.5}` {
		t.Fatalf("%+v %v", r, err)
	}
	for _, v := range []string{`{"symbol":"A","seq":0,"ts_ns":1}`, `[1]`, `{"symbol":"A"`, `{"symbol":"A","seq":"1","ts_ns":1}`} {
		if _, err := parseRecord(nil, []byte(v)); err == nil {
			t.Errorf("%s: expected an error", v)
		}
	}
}

func TestFaultLabel(t *testing.T) {
	cases := map[string]string{
		faultLabel(0, 0):     "none",
		faultLabel(0.05, 80): "error_rate=0.05,latency_ms=80",
		faultLabel(0, 80):    "error_rate=0,latency_ms=80",
		faultLabel(1, 0):     "error_rate=1,latency_ms=0",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestHubSnapshotDedupeAndFanOut(t *testing.T) {
	srv := &server{m: newMetrics("test", "none")}
	h := newHub(srv.m)
	srv.hub = h
	a, b := newWSConn(srv, nil), newWSConn(srv, nil)
	h.attach(a)
	h.attach(b)
	h.publish([]*Record{rec("AAPL", 1)})
	if err := h.subscribe(a, []string{"AAPL", "MSFT", "AAPL"}, 2); err != nil {
		t.Fatal(err)
	}
	if got := string(a.control[0]); !strings.Contains(got, `"symbols":["AAPL","MSFT"]`) || !strings.Contains(got, `"seq":1`) {
		t.Fatalf("subscribed reply %s", got)
	}
	if err := h.subscribe(a, []string{"IBM"}, 2); err == nil {
		t.Fatal("a third symbol must exceed max-symbols 2")
	}
	if err := h.subscribe(b, []string{"MSFT"}, 2); err != nil {
		t.Fatal(err)
	}
	if h.publish([]*Record{rec("AAPL", 2)}) != 0 || h.publish([]*Record{rec("AAPL", 2), rec("AAPL", 1)}) != 2 {
		t.Fatal("publish must drop seq not above the last seen")
	}
	h.publish([]*Record{rec("MSFT", 1), rec("AAPL", 3)})
	if a.pending.len() != 2 || a.pending.skipped["AAPL"] != 1 || b.pending.len() != 1 || b.pending.recs[0].Symbol != "MSFT" {
		t.Fatalf("a pending %d skipped %v, b pending %d", a.pending.len(), a.pending.skipped, b.pending.len())
	}
	h.unsubscribe(a, []string{"AAPL"})
	if a.pending.len() != 1 || a.pending.recs[0].Symbol != "MSFT" {
		t.Fatal("unsubscribe must drop the symbol's pending record")
	}
	found, missing := h.quotes([]string{"AAPL", "NOPE"})
	if len(found) != 1 || found[0].Seq != 3 || len(missing) != 1 {
		t.Fatalf("quotes %v missing %v", found, missing)
	}
	h.detach(a)
	h.detach(b)
	if h.subs.total != 0 || len(h.conns) != 0 {
		t.Fatalf("detach left %d subscriptions", h.subs.total)
	}
}

func TestHelloFrameNamesReplicaAndVersion(t *testing.T) {
	var m struct {
		Type, Replica, Version string
		ServerNs               int64 `json:"server_ns"`
	}
	if err := json.Unmarshal(helloFrame("gateway-1", "v2", 7), &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "hello" || m.Replica != "gateway-1" || m.Version != "v2" || m.ServerNs != 7 {
		t.Fatalf("hello frame = %+v", m)
	}
}

func TestRecordAfterOrdersBySessionThenSeq(t *testing.T) {
	prev := &Record{Session: 100, Seq: 5000}
	cases := []struct {
		r    Record
		want bool
	}{
		{Record{Session: 100, Seq: 5001}, true},
		{Record{Session: 100, Seq: 5000}, false}, // redelivery
		{Record{Session: 100, Seq: 12}, false},
		{Record{Session: 200, Seq: 1}, true}, // the feed restarted: a new session from seq 1
		{Record{Session: 50, Seq: 9000}, false},
	}
	for _, c := range cases {
		if got := c.r.after(prev); got != c.want {
			t.Errorf("(%d,%d).after(100,5000) = %v, want %v", c.r.Session, c.r.Seq, got, c.want)
		}
	}
}
