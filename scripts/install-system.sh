#!/usr/bin/env bash
# Debian packages openbell needs on this machine, installed only when missing (idempotent).
#   prometheus: the server and promtool (rule checks, rule unit tests, TSDB backfill in tests)
#   haproxy: the sandbox's edge (stable/canary split, admin socket, Prometheus exporter)
#   postgresql-15: the ledger's database in the sandbox; prometheus-postgres-exporter: its metrics
#   chromium: headless rendering of the gameday's HTML report in tests (screenshot + DOM after layout)
set -euo pipefail

need=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
[ -x /usr/bin/prometheus-postgres-exporter ] || need+=(prometheus-postgres-exporter)
command -v chromium >/dev/null 2>&1 || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "openbell setup: need root (or sudo) to apt-get install: ${need[*]}" >&2
    exit 3
  fi
fi
echo "openbell setup: installing Debian packages: ${need[*]}" >&2
$SUDO apt-get update -qq
# The package's own service is not wanted: openbell starts Prometheus itself where it needs one.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
