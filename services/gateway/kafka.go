package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// A fetch is a long poll: the broker answers as soon as a record lands (one answer per append, and
	// the enricher appends a fetch's worth of records at once), else after fetchMaxWait. No record waits
	// for a timer on the tick-to-trader path, and an idle stream costs ten requests a second.
	fetchMaxWait   = 100 * time.Millisecond
	fetchMinBytes  = 1
	readyFetchAge  = 3 * time.Second // no fetch answered for this long: Kafka is stale (in /healthz)
	maxExchanges   = 16              // distinct exchange label values before the rest become "other"
	errLogInterval = 5 * time.Second // a broker outage logs once per interval, not per fetch
)

// consumer reads every partition of the topic without a consumer group (each replica needs every symbol),
// starting a few hundred records before the end of each partition to warm the quote cache.
type consumer struct {
	cl        *kgo.Client
	m         *metrics
	lastFetch atomic.Int64 // Unix ns of the last fetch response without a request error
	errMu     sync.Mutex
	lastErr   string
	exchanges map[string]exchangeObservers // consumer goroutine only
	lags      map[int32]prometheus.Gauge   // consumer goroutine only
	// Partitions whose start-up replay (the warm records, minutes old) has been read up to the high watermark:
	// ingest latency is observed from then on, so a replica's start does not read as a pipeline seconds late.
	live map[int32]bool // consumer goroutine only
}

// fetchHook notes each answered fetch: readiness means "the consumer has partitions and is fetching".
type fetchHook struct{ c *consumer }

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (h fetchHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	const fetchKey = 1 // Kafka API key of Fetch
	if key != fetchKey {
		return
	}
	if err := e2e.Err(); err != nil {
		h.c.noteErr(err)
		return
	}
	h.c.lastFetch.Store(time.Now().UnixNano())
}

// newConsumer creates the Kafka client; it connects lazily and reconnects on its own after broker restarts.
func newConsumer(brokers []string, topic string, warmRecords int64, m *metrics) (*consumer, error) {
	c := &consumer{m: m, exchanges: make(map[string]exchangeObservers), lags: make(map[int32]prometheus.Gauge),
		live: make(map[int32]bool)}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ClientID("openbell-gateway"),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeStartOffset(kgo.NewOffset().AtEnd().Relative(-warmRecords)),
		// After data loss on the broker, a market-data fan-out wants the present, not a replay.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.FetchMinBytes(fetchMinBytes),
		kgo.MetadataMinAge(time.Second), // find a topic created after we started within a second or so
		kgo.WithHooks(fetchHook{c}),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	c.cl = cl
	return c, nil
}

func (c *consumer) noteErr(err error) {
	c.errMu.Lock()
	c.lastErr = err.Error()
	c.errMu.Unlock()
}

// notReady returns why the gateway cannot serve yet: until the first fetch is answered it does not know
// the topic's partitions. After that it stays ready through a Kafka outage: its clients keep their
// connections and snapshots, and the stream resumes when the broker is back. Taking every replica out of
// the load balancer would turn a Kafka blip into a gateway outage (see fetchState for the detail).
func (c *consumer) notReady() string {
	if c.lastFetch.Load() != 0 {
		return ""
	}
	return c.fetchState()
}

// fetchState says how the consumer is doing: "fetching" when a fetch was answered recently, else since when
// none was and the last error.
func (c *consumer) fetchState() string {
	last := c.lastFetch.Load()
	if last != 0 && time.Since(time.Unix(0, last)) < readyFetchAge {
		return "fetching"
	}
	c.errMu.Lock()
	lastErr := c.lastErr
	c.errMu.Unlock()
	reason := "kafka: waiting for the topic's partitions"
	if last != 0 {
		reason = fmt.Sprintf("kafka: no fetch answered for %s", time.Since(time.Unix(0, last)).Round(time.Millisecond))
	}
	if lastErr != "" {
		reason += " (last error: " + lastErr + ")"
	}
	return reason
}

// run polls records until ctx ends, handing each fetch's parsed records to publish (the hub) at once.
func (c *consumer) run(ctx context.Context, publish func([]*Record) (stale int)) {
	var lastLog time.Time
	var batch []*Record
	for {
		fetches := c.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			c.noteErr(err)
			if time.Since(lastLog) > errLogInterval {
				lastLog = time.Now()
				slog.Warn("kafka fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		received := time.Now().UnixNano()
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			live := c.live[p.Partition]
			for _, kr := range p.Records {
				c.m.kafkaRecords.Inc()
				r, err := parseRecord(kr.Key, kr.Value)
				if err != nil {
					c.m.kafkaDropped.WithLabelValues("malformed").Inc()
					if time.Since(lastLog) > errLogInterval {
						lastLog = time.Now()
						slog.Warn("malformed record", "partition", p.Partition, "offset", kr.Offset, "err", err)
					}
					continue
				}
				obs := c.exchangeObserver(r.Exchange)
				if live {
					obs.ingest.Observe(float64(received-r.TsNs) / 1e9)
				}
				r.latency = obs.push
				batch = append(batch, r)
			}
			if n := len(p.Records); n > 0 {
				behind := p.HighWatermark - p.Records[n-1].Offset - 1
				c.lagGauge(p.Partition).Set(float64(behind))
				if behind == 0 {
					c.live[p.Partition] = true
				}
			}
		})
		if len(batch) > 0 {
			c.m.kafkaFetches.Inc()
			if stale := publish(batch); stale > 0 {
				c.m.kafkaDropped.WithLabelValues("stale").Add(float64(stale))
			}
			clear(batch)
			batch = batch[:0]
		}
	}
}

// exchangeObservers are one exchange's latency histogram children: ingest (exchange timestamp to the record
// received here: the pipeline's share) and push (to the WebSocket write: ingest plus the fan-out's share).
type exchangeObservers struct{ ingest, push prometheus.Observer }

// exchangeObserver resolves the latency children for an exchange once per exchange, bounding the
// label's values so a bad producer cannot explode the series count.
func (c *consumer) exchangeObserver(exchange string) exchangeObservers {
	if o, ok := c.exchanges[exchange]; ok {
		return o
	}
	if len(c.exchanges) >= maxExchanges || exchange == "" {
		exchange = "other"
	}
	o := exchangeObservers{ingest: c.m.ingestLatency.WithLabelValues(exchange), push: c.m.pushLatency.WithLabelValues(exchange)}
	if exchange != "other" {
		c.exchanges[exchange] = o
	}
	return o
}

func (c *consumer) lagGauge(partition int32) prometheus.Gauge {
	g, ok := c.lags[partition]
	if !ok {
		g = c.m.kafkaLag.WithLabelValues(strconv.Itoa(int(partition)))
		c.lags[partition] = g
	}
	return g
}

// close leaves the brokers.
func (c *consumer) close() { c.cl.Close() }
