"""The trading platform's own workloads: market feed, enricher, ledger (Python) and the gateway (Go)."""
