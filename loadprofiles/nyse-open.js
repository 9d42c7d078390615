// profile: nyse-open
// description: NYSE opening bell: pre-open ramp to 45k traders, bell spike to 75k with an order and tick burst, decay to steady trading.
//
// Models 09:15-10:15 ET on a busy day. Production numbers (sources and assumptions):
//   - 75,000 concurrent traders at the open, each watching 40-80 instruments (~40 messages/s each)
//     [capacity review, market-data team; the 40-80 range is the watchlist size distribution].
//   - Page load after the rebuild: p95 < 320 ms, p99 < 580 ms (default thresholds on http_req_duration{kind:page}).
//   - 2.5 million ticks/s at peak = feed multiplier 6 at the bell, so the cluster feed runs a base rate of
//     ~417k ticks/s (the schedule below is relative to whatever base rate the feed was started with).
//   - Assumed: orders 0.002/s per trader pre-open, 0.05/s per trader at the bell (3,750/s), 0.01/s steady
//     (550/s); sessions lognormal, mean 20 min, sigma 0.8; dashboard refresh every 60 s.
// Timeline at TIME_SCALE=1 (duration_s 3600, peak 75,000 trader VUs at SCALE=1):
//   0-600 s ramp to 15,000 (pre-market) | 600-900 s to 45,000 (pre-open) | 900-960 s bell: to 75,000,
//   orders to 3,750/s, feed x6 | 960-1080 s hold | 1080-1680 s decay to 55,000, 550 orders/s, feed x4 -> x2 |
//   1680-3480 s steady | 3480-3600 s wind down to 0, feed x1.
// Knobs: SCALE (default 0.001 -> 75 VUs), TIME_SCALE (default 1). Here: SCALE=0.0005 TIME_SCALE=0.025 runs 90 s
// with 38 trader VUs at peak. Env and metrics: see README.md.

import { entryPoints } from './lib/trader.js';

export const profile = {
  name: 'nyse-open',
  description: 'NYSE opening bell: pre-open ramp to 45k traders, bell spike to 75k with an order and tick burst, decay to steady trading.',
  models: 'NYSE cash open 09:15-10:15 ET: connection, order and market-data burst in the first 1-2 minutes after the bell, decay to steady trading.',
  sources: [
    'capacity review: 75,000 concurrent traders at the NYSE open, 40-80 instruments each, ~40 messages/s each',
    'rebuild targets: page load p95 < 320 ms, p99 < 580 ms',
    'market data: 2.5 million ticks/s at peak',
    'assumption: order rates per trader (0.002/s pre-open, 0.05/s at the bell, 0.01/s steady)',
    'assumption: session length lognormal mean 20 min sigma 0.8; dashboard refresh 60 s',
  ],
  production: {
    peak_traders: 75000,
    symbols_per_trader: [40, 80],
    messages_per_trader_per_s: 40,
    peak_ticks_per_s: 2500000,
    page_load_ms: { p95: 320, p99: 580 },
    session_mean_s: 1200,
    session_sigma: 0.8,
    dashboard_refresh_s: 60,
    // Each stage ramps linearly to its targets over duration_s.
    stages: [
      { duration_s: 600, traders: 15000, orders_per_s: 30 },
      { duration_s: 300, traders: 45000, orders_per_s: 90 },
      { duration_s: 60, traders: 75000, orders_per_s: 3750 },
      { duration_s: 120, traders: 75000, orders_per_s: 3750 },
      { duration_s: 600, traders: 55000, orders_per_s: 550 },
      { duration_s: 1800, traders: 55000, orders_per_s: 550 },
      { duration_s: 120, traders: 0, orders_per_s: 0 },
    ],
    // Feed rate multiplier over time (steps, not ramped); the bell is at 900 s.
    feed_schedule: [
      { at_s: 0, multiplier: 1 },
      { at_s: 900, multiplier: 6 },
      { at_s: 1080, multiplier: 4 },
      { at_s: 1380, multiplier: 3 },
      { at_s: 1680, multiplier: 2 },
      { at_s: 3480, multiplier: 1 },
    ],
  },
  defaults: { scale: 0.001, time_scale: 1 },
  duration_s: 3600,
};

// k6 looks for these by name in the main script: options, the two scenarios' functions, setup, teardown.
export const { options, setup, teardown, trader, orders } = entryPoints(profile);
