package main

import (
	"fmt"
	"slices"
	"sync"
)

// hub owns the latest quote per symbol, the subscription registry and the open connections. One mutex
// guards them all so that a subscriber's snapshot and its first streamed update never overlap or leave a
// hole: publishing (cache update + fan-out) and subscribing (register + snapshot) are atomic to each other.
// Fan-out under the lock is cheap: it only queues a pointer per subscriber and never waits on a socket.
type hub struct {
	mu     sync.Mutex
	latest map[string]*Record
	subs   *registry[*wsConn]
	conns  map[*wsConn]struct{}
	m      *metrics
	// woken collects the connections to wake after a publish; only publish touches it.
	woken []*wsConn
}

func newHub(m *metrics) *hub {
	return &hub{latest: make(map[string]*Record), subs: newRegistry[*wsConn](), conns: make(map[*wsConn]struct{}), m: m}
}

// publish caches each record as its symbol's latest quote and queues it for every subscriber, then wakes
// the writers that got something. Records not after the last seen for their symbol (same feed session and
// seq not above it, or an older session) are
// redeliveries (delivery is at least once) and are skipped; publish returns how many. Taking a whole fetch
// at once means one lock and at most one wake-up (so one frame) per connection per fetch, which is what
// keeps frames, syscalls and context switches well below one per delivered record under load.
// Only one goroutine (the Kafka consumer) may call publish.
func (h *hub) publish(recs []*Record) (stale int) {
	h.mu.Lock()
	for _, r := range recs {
		if prev := h.latest[r.Symbol]; prev != nil && !r.after(prev) {
			stale++
			continue
		}
		h.latest[r.Symbol] = r
		for _, c := range h.subs.subscribers(r.Symbol) {
			if c.offer(r) {
				h.woken = append(h.woken, c)
			}
		}
	}
	h.mu.Unlock()
	for _, c := range h.woken {
		c.wake()
	}
	clear(h.woken)
	h.woken = h.woken[:0]
	return stale
}

// attach registers a new connection.
func (h *hub) attach(c *wsConn) {
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
}

// detach removes a closing connection and all its subscriptions.
func (h *hub) detach(c *wsConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conns, c)
	for s := range c.symbols {
		h.subs.remove(s, c)
	}
	h.m.subscriptions.Sub(float64(len(c.symbols)))
	clear(c.symbols)
}

// subscribe adds symbols to c (all or none: the total may not exceed maxSymbols) and queues the
// "subscribed" reply with a snapshot of the symbols this request added, before any of their updates.
func (h *hub) subscribe(c *wsConn, symbols []string, maxSymbols int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	added := make([]string, 0, len(symbols))
	seen := make(map[string]struct{}, len(symbols))
	for _, s := range symbols {
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		if _, have := c.symbols[s]; !have {
			added = append(added, s)
		}
	}
	if n := len(c.symbols) + len(added); n > maxSymbols {
		return fmt.Errorf("too many symbols: %d would be subscribed, at most %d per connection", n, maxSymbols)
	}
	snapshot := make([]*Record, 0, len(added))
	for _, s := range added {
		c.symbols[s] = struct{}{}
		h.subs.add(s, c)
		if r := h.latest[s]; r != nil {
			snapshot = append(snapshot, r)
		}
	}
	h.m.subscriptions.Add(float64(len(added)))
	all := make([]string, 0, len(c.symbols))
	for s := range c.symbols {
		all = append(all, s)
	}
	slices.Sort(all)
	c.sendControl(subscribedReply(all, snapshot), nil)
	return nil
}

// unsubscribe removes symbols from c, drops their pending records and queues the "unsubscribed" reply
// listing the symbols actually removed.
func (h *hub) unsubscribe(c *wsConn, symbols []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	removed := make([]string, 0, len(symbols))
	for _, s := range symbols {
		if _, have := c.symbols[s]; have {
			delete(c.symbols, s)
			h.subs.remove(s, c)
			removed = append(removed, s)
		}
	}
	h.m.subscriptions.Sub(float64(len(removed)))
	c.sendControl(unsubscribedReply(removed), removed)
}

// quotes returns the latest record of each symbol that has one, in request order, and the others as missing.
func (h *hub) quotes(symbols []string) (found []*Record, missing []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	missing = []string{}
	for _, s := range symbols {
		if r := h.latest[s]; r != nil {
			found = append(found, r)
		} else {
			missing = append(missing, s)
		}
	}
	return found, missing
}

// connections lists the open connections (for drains).
func (h *hub) connections() []*wsConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*wsConn, 0, len(h.conns))
	for c := range h.conns {
		out = append(out, c)
	}
	return out
}
