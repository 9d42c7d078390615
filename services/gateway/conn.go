package main

import (
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	pingInterval = 20 * time.Second // WebSocket pings find dead peers on quiet connections
	pongWait     = 60 * time.Second // no frame from the peer for this long closes the connection
	readLimit    = 64 << 10         // bytes per client frame; subscribe lists of --max-symbols fit easily
)

// wsConn is one client connection: a reader goroutine handling requests and a writer goroutine that sends
// whatever is pending as one frame. The Kafka consumer only ever queues into it without blocking, so a slow
// or stuck client cannot hold up the consumer or other clients.
type wsConn struct {
	srv    *server
	ws     *websocket.Conn
	notify chan struct{} // capacity 1: "something is pending", coalesces wake-ups
	done   chan struct{} // closed at teardown: stops the writer

	mu         sync.Mutex
	pending    *pendingSet
	control    [][]byte // replies, sent in order before the next quotes frame
	closing    bool     // a close was decided: queue nothing more
	forceClose *time.Timer
	batch      time.Duration // at most one quotes frame per batch (subscribe's batch_ms); 0: no wait
	windowEnd  time.Time     // with a batch: no quotes frame before this (the last frame's start + batch)

	symbols map[string]struct{} // this connection's subscriptions, guarded by hub.mu
}

func newWSConn(srv *server, ws *websocket.Conn) *wsConn {
	return &wsConn{srv: srv, ws: ws, notify: make(chan struct{}, 1), done: make(chan struct{}),
		pending: newPendingSet(), symbols: make(map[string]struct{})}
}

func (c *wsConn) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// offer queues r for this client, replacing an older pending record of its symbol (conflation). It reports
// whether the writer needs a wake-up: not when r replaced a record, whose arrival already called for one.
func (c *wsConn) offer(r *Record) (wake bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	conflated := c.pending.put(r)
	// A replacement inside the batch window is the window doing its job, not a client falling behind.
	batching := conflated && c.batch > 0 && time.Now().Before(c.windowEnd)
	c.mu.Unlock()
	if conflated {
		if batching {
			c.srv.m.batched.Inc()
		} else {
			c.srv.m.conflations.Inc()
		}
	}
	return !conflated
}

// sendControl queues a reply frame; drop names symbols whose pending records must not be sent any more.
func (c *wsConn) sendControl(msg []byte, drop []string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if len(drop) > 0 {
		c.pending.drop(drop)
	}
	c.control = append(c.control, msg)
	c.mu.Unlock()
	c.wake()
}

// run serves the connection until it closes: the caller's goroutine reads, a second one writes.
func (c *wsConn) run() {
	go c.writeLoop()
	c.readLoop()
}

func (c *wsConn) readLoop() {
	defer c.teardown()
	c.ws.SetReadLimit(readLimit)
	_ = c.ws.SetReadDeadline(time.Now().Add(pongWait))
	c.ws.SetPongHandler(func(string) error { return c.ws.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return // peer closed, read deadline, or the writer closed the socket
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(pongWait))
		m, err := parseClientMsg(data)
		if err != nil {
			c.sendControl(errorReply(err.Error()), nil)
			continue
		}
		switch m.Op {
		case "subscribe":
			if m.BatchMs != nil {
				c.mu.Lock()
				c.batch = time.Duration(*m.BatchMs) * time.Millisecond
				c.mu.Unlock()
			}
			if err := c.srv.hub.subscribe(c, m.Symbols, c.srv.cfg.maxSymbols); err != nil {
				c.sendControl(errorReply(err.Error()), nil)
			}
		case "unsubscribe":
			c.srv.hub.unsubscribe(c, m.Symbols)
		case "ping":
			c.sendControl(pongReply(m.ID, time.Now().UnixNano()), nil)
		}
	}
}

// writeLoop sends queued replies, then all pending records as one quotes frame, each time it is woken.
// With a batch window (subscribe's batch_ms) a quotes frame follows the previous one by at least the window:
// records arriving meanwhile wait and ride together (a newer record of a symbol replacing the pending one,
// counted in `skipped`); a record after a quiet spell goes at once. Replies never wait.
// Its pending set and frame buffer are swapped and reused, so steady-state sending does not allocate.
func (c *wsConn) writeLoop() {
	cfg := c.srv.cfg
	m := c.srv.m
	spare := newPendingSet()
	var ctl [][]byte
	buf := make([]byte, 0, 16<<10)
	var fseq uint64
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	holding := false // waiting for the batch window to end, with records pending
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	defer hold.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(cfg.writeTimeout)); err != nil {
				c.writeFailed()
				return
			}
			continue
		case <-c.notify:
		case <-hold.C:
		}
		woke := time.Now()
		c.mu.Lock()
		ctl, c.control = c.control, ctl[:0]
		wait := c.windowEnd.Sub(woke)
		if c.batch == 0 || wait <= 0 {
			c.pending, spare = spare, c.pending
			holding = false
			if c.batch > 0 && spare.len() > 0 {
				c.windowEnd = woke.Add(c.batch) // this frame opens the next window
			}
		} else if !holding && c.pending.len() > 0 {
			holding = true
			hold.Reset(wait) // the records pending now go when the window ends
		}
		c.mu.Unlock()
		for _, msg := range ctl {
			_ = c.ws.SetWriteDeadline(time.Now().Add(cfg.writeTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
				c.writeFailed()
				return
			}
		}
		clear(ctl)
		if spare.len() == 0 {
			continue
		}
		if cfg.faultLatency > 0 {
			// Injected fault: hold the frame back so the delay shows in push latency.
			select {
			case <-time.After(cfg.faultLatency):
			case <-c.done:
				return
			}
		}
		fseq++
		buf = appendQuotesFrame(buf[:0], fseq, spare.recs, spare.skipped)
		_ = c.ws.SetWriteDeadline(time.Now().Add(cfg.writeTimeout))
		if err := c.ws.WriteMessage(websocket.TextMessage, buf); err != nil {
			c.writeFailed()
			return
		}
		now := time.Now().UnixNano()
		for _, r := range spare.recs {
			r.latency.Observe(float64(now-r.TsNs) / 1e9)
		}
		m.messages.Add(float64(spare.len()))
		m.frames.Inc()
		spare.reset()
		if cap(buf) > 1<<20 {
			buf = make([]byte, 0, 16<<10) // one huge burst should not pin a megabyte per connection
		}
	}
}

// writeFailed handles a failed write: a client that cannot take a write within --write-timeout (or whose
// socket broke) is cut off; while a close handshake is under way the reader finishes it instead.
func (c *wsConn) writeFailed() {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if !closing {
		_ = c.ws.Close()
	}
}

// closeWith sends a close frame (code, reason) and stops queuing; the socket is closed when the peer
// answers, or after grace at the latest. It returns false if the connection was already closing.
func (c *wsConn) closeWith(code int, reason string, grace time.Duration) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	c.closing = true
	c.pending.reset()
	c.control = nil
	c.forceClose = time.AfterFunc(grace, func() { _ = c.ws.Close() })
	c.mu.Unlock()
	// WriteControl may run concurrently with the writer's WriteMessage (gorilla allows it); it waits at
	// most the write timeout for a frame in progress.
	if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason),
		time.Now().Add(c.srv.cfg.writeTimeout)); err != nil {
		_ = c.ws.Close()
	}
	return true
}

// teardown runs once, when the reader stops: unregister, stop the writer, release the socket.
func (c *wsConn) teardown() {
	c.srv.hub.detach(c)
	c.mu.Lock()
	c.closing = true
	if c.forceClose != nil {
		c.forceClose.Stop()
	}
	c.pending.reset()
	c.mu.Unlock()
	close(c.done)
	_ = c.ws.Close()
	c.srv.m.connections.Dec()
	c.srv.open.Add(-1)
}
