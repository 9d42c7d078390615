package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxSymbolLen bounds one symbol's length in bytes; real tickers are far shorter.
const maxSymbolLen = 32

// maxBatchMs bounds a connection's batch window: beyond a second a quote is no longer live.
const maxBatchMs = 1000

// clientMsg is one client -> server text frame: {"op":"subscribe"|"unsubscribe","symbols":[...]} (subscribe
// may carry "batch_ms") or {"op":"ping","id":X}.
type clientMsg struct {
	Op      string          `json:"op"`
	Symbols []string        `json:"symbols"`
	ID      json.RawMessage `json:"id"`
	// BatchMs, on subscribe, asks for at most one quotes frame per this many ms on the connection (0: a frame
	// whenever records are pending, the default). Absent leaves the connection's setting as it is.
	BatchMs *int `json:"batch_ms"`
}

// parseClientMsg decodes and validates a client frame; the error text goes back to the client as is.
func parseClientMsg(data []byte) (clientMsg, error) {
	var m clientMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return m, errors.New("malformed JSON: expected an object with \"op\"")
	}
	switch m.Op {
	case "subscribe", "unsubscribe":
		if len(m.Symbols) == 0 {
			return m, fmt.Errorf("%s needs a non-empty \"symbols\" array", m.Op)
		}
		for _, s := range m.Symbols {
			if s == "" || len(s) > maxSymbolLen || !utf8.ValidString(s) {
				return m, fmt.Errorf("bad symbol %q: 1 to %d bytes of UTF-8", s, maxSymbolLen)
			}
		}
	case "ping":
		if len(m.ID) == 0 {
			m.ID = json.RawMessage("null")
		}
	case "":
		return m, errors.New("missing \"op\"")
	default:
		return m, fmt.Errorf("unknown op %q (subscribe, unsubscribe, ping)", m.Op)
	}
	if m.BatchMs != nil && (m.Op != "subscribe" || *m.BatchMs < 0 || *m.BatchMs > maxBatchMs) {
		return m, fmt.Errorf("\"batch_ms\" is a subscribe field, an integer from 0 to %d", maxBatchMs)
	}
	return m, nil
}

// appendJSONString appends s as a JSON string literal (quotes, backslashes and control bytes escaped).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// appendQuotesFrame appends {"type":"quotes","fseq":N,"n":R,"quotes":[...],"skipped":{...}} to dst. Records
// are embedded as published (already JSON); "skipped" is left out when empty. fseq and n (the number of
// records) lead the frame at fixed keys, so a client that only counts can read them without parsing the
// records. It allocates nothing when dst has room, which is why the writer reuses one buffer per connection.
func appendQuotesFrame(dst []byte, fseq uint64, recs []*Record, skipped map[string]int) []byte {
	dst = append(dst, `{"type":"quotes","fseq":`...)
	dst = strconv.AppendUint(dst, fseq, 10)
	dst = append(dst, `,"n":`...)
	dst = strconv.AppendInt(dst, int64(len(recs)), 10)
	dst = append(dst, `,"quotes":[`...)
	for i, r := range recs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, r.Raw...)
	}
	dst = append(dst, ']')
	if len(skipped) > 0 {
		dst = append(dst, `,"skipped":{`...)
		first := true
		for sym, k := range skipped {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, sym)
			dst = append(dst, ':')
			dst = strconv.AppendInt(dst, int64(k), 10)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// rawRecords lists records' published JSON, for replies encoded with encoding/json.
func rawRecords(recs []*Record) []json.RawMessage {
	out := make([]json.RawMessage, len(recs))
	for i, r := range recs {
		out[i] = r.Raw
	}
	return out
}

// helloFrame is {"type":"hello","replica":R,"version":V,"server_ns":N}, the first frame of every connection:
// a client (and a canary judge) knows which replica and version serve it without asking.
func helloFrame(replica, version string, serverNs int64) []byte {
	b, _ := json.Marshal(struct {
		Type     string `json:"type"`
		Replica  string `json:"replica"`
		Version  string `json:"version"`
		ServerNs int64  `json:"server_ns"`
	}{"hello", replica, version, serverNs})
	return b
}

// subscribedReply is {"type":"subscribed","symbols":[all now subscribed],"snapshot":[latest of each added]}.
func subscribedReply(all []string, snapshot []*Record) []byte {
	b, _ := json.Marshal(struct {
		Type     string            `json:"type"`
		Symbols  []string          `json:"symbols"`
		Snapshot []json.RawMessage `json:"snapshot"`
	}{"subscribed", all, rawRecords(snapshot)})
	return b
}

// unsubscribedReply is {"type":"unsubscribed","symbols":[the symbols removed]}.
func unsubscribedReply(removed []string) []byte {
	b, _ := json.Marshal(struct {
		Type    string   `json:"type"`
		Symbols []string `json:"symbols"`
	}{"unsubscribed", removed})
	return b
}

// pongReply is {"type":"pong","id":X,"server_ns":unix nanoseconds}.
func pongReply(id json.RawMessage, serverNs int64) []byte {
	b, _ := json.Marshal(struct {
		Type     string          `json:"type"`
		ID       json.RawMessage `json:"id"`
		ServerNs int64           `json:"server_ns"`
	}{"pong", id, serverNs})
	return b
}

// errorReply is {"type":"error","error":"..."}.
func errorReply(msg string) []byte {
	b, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Error string `json:"error"`
	}{"error", msg})
	return b
}
