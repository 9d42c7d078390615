// profile: soak
// description: Soak: 4 hours of steady trading at 50k traders, 400 orders/s and 2x ticks, to find leaks, slow drift and unbounded growth.
//
// Models a long ordinary session. Production numbers (sources and assumptions):
//   - Assumed 50,000 concurrent traders steady (two thirds of the 75,000 at the NYSE open), each watching
//     40-80 instruments (~40 messages/s each) [capacity review].
//   - Feed multiplier 2 over the ~417k ticks/s cluster base rate (~833k ticks/s; peak is 2.5 million/s).
//   - Page load after the rebuild: p95 < 320 ms, p99 < 580 ms (default thresholds on http_req_duration{kind:page}).
//   - Assumed: 400 orders/s (0.008/s per trader); sessions lognormal, mean 45 min, sigma 0.8, so the
//     gateways see a steady churn of connects; dashboard refresh every 60 s.
// Timeline at TIME_SCALE=1 (duration_s 15300 = 4 h 15 min, peak 50,000 trader VUs at SCALE=1):
//   0-600 s ramp to 50,000, 400 orders/s, feed x1 -> x2 at 600 s | 600-15000 s steady (4 h) |
//   15000-15300 s wind down to 0, feed x1.
// Knobs: SCALE (default 0.001 -> 50 VUs), TIME_SCALE (default 1). Here: SCALE=0.0008 TIME_SCALE=0.005 runs 77 s
// with 40 trader VUs at peak. Env and metrics: see README.md.

import { entryPoints } from './lib/trader.js';

export const profile = {
  name: 'soak',
  description: 'Soak: 4 hours of steady trading at 50k traders, 400 orders/s and 2x ticks, to find leaks, slow drift and unbounded growth.',
  models: 'A long steady session: memory, connection and lag drift over hours rather than burst capacity.',
  sources: [
    'capacity review: 75,000 concurrent traders at the NYSE open, 40-80 instruments each, ~40 messages/s each',
    'market data: 2.5 million ticks/s at peak (the soak runs at a third of it)',
    'rebuild targets: page load p95 < 320 ms, p99 < 580 ms',
    'assumption: steady concurrency 50,000, 400 orders/s',
    'assumption: session length lognormal mean 45 min sigma 0.8; dashboard refresh 60 s',
  ],
  production: {
    peak_traders: 50000,
    symbols_per_trader: [40, 80],
    messages_per_trader_per_s: 40,
    peak_ticks_per_s: 833000,
    page_load_ms: { p95: 320, p99: 580 },
    session_mean_s: 2700,
    session_sigma: 0.8,
    dashboard_refresh_s: 60,
    stages: [
      { duration_s: 600, traders: 50000, orders_per_s: 400 },
      { duration_s: 14400, traders: 50000, orders_per_s: 400 },
      { duration_s: 300, traders: 0, orders_per_s: 0 },
    ],
    feed_schedule: [
      { at_s: 0, multiplier: 1 },
      { at_s: 600, multiplier: 2 },
      { at_s: 15000, multiplier: 1 },
    ],
  },
  defaults: { scale: 0.001, time_scale: 1 },
  duration_s: 15300,
};

// k6 looks for these by name in the main script: options, the two scenarios' functions, setup, teardown.
export const { options, setup, teardown, trader, orders } = entryPoints(profile);
