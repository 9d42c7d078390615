package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Record is one enriched quote from Kafka: the fields the gateway routes on, plus the value as published.
type Record struct {
	Symbol   string
	Seq      int64  // per-symbol sequence from the feed, from 1
	Session  int64  // the feed session Seq counts in (its start, Unix ns); 0 when the feed sends none
	Exchange string // listing venue MIC: the push-latency label
	TsNs     int64  // exchange timestamp, Unix nanoseconds
	// Raw is the compacted JSON object as published. Frames embed it verbatim, so a record is serialised
	// once however many subscribers it has.
	Raw []byte
	// latency is the push-latency histogram child of Exchange, resolved once here, not per delivery.
	latency prometheus.Observer
}

// recordFields are the only fields the gateway reads; the rest of the value passes through untouched.
type recordFields struct {
	Symbol   string `json:"symbol"`
	Seq      int64  `json:"seq"`
	Session  int64  `json:"session"`
	Exchange string `json:"exchange"`
	TsNs     int64  `json:"ts_ns"`
}

// after reports whether r comes after prev in its symbol's stream: a later feed session, or a higher seq in
// the same session. Anything else is a redelivery (delivery upstream is at least once).
func (r *Record) after(prev *Record) bool {
	if r.Session != prev.Session {
		return r.Session > prev.Session
	}
	return r.Seq > prev.Seq
}

// parseRecord reads one Kafka record value (JSON object, fields in services/README.md). The key (the symbol)
// stands in for a missing "symbol". The value is copied, so the record does not pin Kafka's fetch buffer.
func parseRecord(key, value []byte) (*Record, error) {
	var compact bytes.Buffer
	compact.Grow(len(value))
	if err := json.Compact(&compact, value); err != nil {
		return nil, fmt.Errorf("value is not JSON: %w", err)
	}
	raw := compact.Bytes()
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("value is not a JSON object")
	}
	var f recordFields
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("bad record fields: %w", err)
	}
	if f.Symbol == "" {
		f.Symbol = string(key)
	}
	if f.Symbol == "" || f.Seq <= 0 || f.TsNs <= 0 {
		return nil, errors.New("record needs symbol, seq > 0 and ts_ns > 0")
	}
	return &Record{Symbol: f.Symbol, Seq: f.Seq, Session: f.Session, Exchange: f.Exchange, TsNs: f.TsNs, Raw: raw}, nil
}
