// profile: london-open
// description: LSE opening auction: pre-open ramp to 18k traders, 08:00 spike to 30k with an order and tick burst, decay to steady trading.
//
// Models 07:45-08:30 London time: the nyse-open shape, smaller. Production numbers (sources and assumptions):
//   - Assumed 30,000 concurrent traders at the LSE open (40% of the 75,000 at the NYSE open, by the firm's
//     European vs US seat count), each watching 40-80 instruments (~40 messages/s each) [capacity review].
//   - Page load after the rebuild: p95 < 320 ms, p99 < 580 ms (default thresholds on http_req_duration{kind:page}).
//   - Assumed 1.25 million ticks/s at the London peak (half the 2.5 million/s NYSE peak) = feed multiplier 3
//     over the same ~417k ticks/s cluster base rate as nyse-open.
//   - Assumed: orders 0.0025/s per trader pre-open, 0.04/s at the open (1,200/s), 0.01/s steady (220/s);
//     sessions lognormal, mean 15 min, sigma 0.8; dashboard refresh every 60 s.
// Timeline at TIME_SCALE=1 (duration_s 2700, peak 30,000 trader VUs at SCALE=1):
//   0-600 s ramp to 6,000 | 600-900 s to 18,000 | 900-960 s open: to 30,000, orders to 1,200/s, feed x3 |
//   960-1080 s hold | 1080-1680 s decay to 22,000, 220 orders/s, feed x2 -> x1.5 | 1680-2580 s steady |
//   2580-2700 s wind down to 0, feed x1.
// Knobs: SCALE (default 0.001 -> 30 VUs), TIME_SCALE (default 1). Here: SCALE=0.0015 TIME_SCALE=0.03 runs 81 s
// with 45 trader VUs at peak. Env and metrics: see README.md.

import { entryPoints } from './lib/trader.js';

export const profile = {
  name: 'london-open',
  description: 'LSE opening auction: pre-open ramp to 18k traders, 08:00 spike to 30k with an order and tick burst, decay to steady trading.',
  models: 'LSE open 07:45-08:30 London: the nyse-open shape at 40% of its traders and half its tick rate.',
  sources: [
    'capacity review: 75,000 concurrent traders at the NYSE open, 40-80 instruments each, ~40 messages/s each',
    'assumption: London open concurrency 40% of NYSE (30,000)',
    'rebuild targets: page load p95 < 320 ms, p99 < 580 ms',
    'assumption: 1.25 million ticks/s at the London peak (half of the 2.5 million/s NYSE peak)',
    'assumption: order rates per trader (0.0025/s pre-open, 0.04/s at the open, 0.01/s steady)',
    'assumption: session length lognormal mean 15 min sigma 0.8; dashboard refresh 60 s',
  ],
  production: {
    peak_traders: 30000,
    symbols_per_trader: [40, 80],
    messages_per_trader_per_s: 40,
    peak_ticks_per_s: 1250000,
    page_load_ms: { p95: 320, p99: 580 },
    session_mean_s: 900,
    session_sigma: 0.8,
    dashboard_refresh_s: 60,
    stages: [
      { duration_s: 600, traders: 6000, orders_per_s: 15 },
      { duration_s: 300, traders: 18000, orders_per_s: 45 },
      { duration_s: 60, traders: 30000, orders_per_s: 1200 },
      { duration_s: 120, traders: 30000, orders_per_s: 1200 },
      { duration_s: 600, traders: 22000, orders_per_s: 220 },
      { duration_s: 900, traders: 22000, orders_per_s: 220 },
      { duration_s: 120, traders: 0, orders_per_s: 0 },
    ],
    // The open is at 900 s.
    feed_schedule: [
      { at_s: 0, multiplier: 1 },
      { at_s: 900, multiplier: 3 },
      { at_s: 1080, multiplier: 2 },
      { at_s: 1680, multiplier: 1.5 },
      { at_s: 2580, multiplier: 1 },
    ],
  },
  defaults: { scale: 0.001, time_scale: 1 },
  duration_s: 2700,
};

// k6 looks for these by name in the main script: options, the two scenarios' functions, setup, teardown.
export const { options, setup, teardown, trader, orders } = entryPoints(profile);
