package main

// pendingSet is one connection's bounded send queue: at most the latest undelivered record per symbol, in
// the order symbols first became pending. Its size is bounded by the connection's subscriptions, so a slow
// client costs memory proportional to what it subscribed to, never to how far behind it is.
type pendingSet struct {
	recs    []*Record
	index   map[string]int // symbol -> position in recs
	skipped map[string]int // symbol -> records replaced (conflated away) since the last reset
}

func newPendingSet() *pendingSet {
	return &pendingSet{index: make(map[string]int), skipped: make(map[string]int)}
}

// put queues r, replacing a pending record of the same symbol; it reports whether it replaced one.
func (p *pendingSet) put(r *Record) (conflated bool) {
	if i, ok := p.index[r.Symbol]; ok {
		p.recs[i] = r
		p.skipped[r.Symbol]++
		return true
	}
	p.index[r.Symbol] = len(p.recs)
	p.recs = append(p.recs, r)
	return false
}

// drop removes pending records of the given symbols (after an unsubscribe, so none of them is sent).
func (p *pendingSet) drop(symbols []string) {
	removed := false
	for _, s := range symbols {
		if i, ok := p.index[s]; ok {
			p.recs[i] = nil
			delete(p.index, s)
			delete(p.skipped, s)
			removed = true
		}
	}
	if !removed {
		return
	}
	kept := p.recs[:0]
	for _, r := range p.recs {
		if r != nil {
			p.index[r.Symbol] = len(kept)
			kept = append(kept, r)
		}
	}
	clear(p.recs[len(kept):])
	p.recs = kept
}

// len is the number of pending records.
func (p *pendingSet) len() int { return len(p.recs) }

// reset empties the set, keeping its storage (the writer reuses it: no allocation per frame).
func (p *pendingSet) reset() {
	clear(p.recs) // let delivered records be collected
	p.recs = p.recs[:0]
	clear(p.index)
	clear(p.skipped)
}
