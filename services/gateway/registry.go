package main

// registry maps each symbol to its subscribers. It is not safe for concurrent use: the hub guards it.
// Subscribers are kept in slices (not sets) because the hot path iterates them for every record, while
// adds and removes happen only on subscribe, unsubscribe and disconnect.
type registry[C comparable] struct {
	subs  map[string][]C
	total int // subscriptions across all symbols
}

func newRegistry[C comparable]() *registry[C] {
	return &registry[C]{subs: make(map[string][]C)}
}

// add subscribes c to symbol; the caller ensures c is not already subscribed to it.
func (r *registry[C]) add(symbol string, c C) {
	r.subs[symbol] = append(r.subs[symbol], c)
	r.total++
}

// remove unsubscribes c from symbol, reporting whether it was subscribed.
func (r *registry[C]) remove(symbol string, c C) bool {
	list := r.subs[symbol]
	for i, x := range list {
		if x == c {
			last := len(list) - 1
			list[i] = list[last]
			var zero C
			list[last] = zero
			if last == 0 {
				delete(r.subs, symbol)
			} else {
				r.subs[symbol] = list[:last]
			}
			r.total--
			return true
		}
	}
	return false
}

// subscribers returns symbol's subscribers; the slice is valid only until the registry next changes.
func (r *registry[C]) subscribers(symbol string) []C { return r.subs[symbol] }
