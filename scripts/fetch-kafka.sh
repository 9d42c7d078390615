#!/usr/bin/env bash
# Apache Kafka's broker jars (and Prometheus' JMX exporter agent) from Maven Central into the openbell cache.
# Idempotent: does nothing when the jars are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' services/kafka/pom.xml)
JMX_AGENT=io.prometheus.jmx:jmx_prometheus_javaagent:1.0.1
CACHE=${OPENBELL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openbell}
DEST="$CACHE/kafka-$VERSION"
if [ -f "$DEST/lib/kafka_2.13-$VERSION.jar" ] && ls "$DEST"/agent/jmx_prometheus_javaagent-*.jar >/dev/null 2>&1; then
  exit 0
fi
command -v mvn >/dev/null || { echo "openbell setup: Maven (mvn) is needed to fetch Apache Kafka $VERSION" >&2; exit 3; }
echo "openbell setup: fetching Apache Kafka $VERSION from Maven Central into $DEST" >&2
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp/lib" "$DEST.tmp/agent"
LOG="$DEST.tmp/maven.log"
mvn_run() {
  mvn -B -Dstyle.color=never -f services/kafka/pom.xml "$@" >>"$LOG" 2>&1 || {
    tail -30 "$LOG" >&2; echo "openbell setup: Maven failed (log: $LOG)" >&2; exit 3; }
}
mvn_run dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$DEST.tmp/lib"
mvn_run dependency:copy -Dartifact=$JMX_AGENT -DoutputDirectory="$DEST.tmp/agent"
rm -f "$LOG"
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
