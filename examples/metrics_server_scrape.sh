#!/usr/bin/env bash
# ctest: starts metrics_server on a free loopback port, scrapes /metrics
# twice with curl, checks the Content-Type, has promtool check the text,
# checks that no counter went backwards between the scrapes, and stops the
# server through /quit. Every step is bounded in time.
set -euo pipefail
server=$1 curl=$2 promtool=$3 work=$4
rm -rf "$work" && mkdir -p "$work"
"$server" --port 0 --port-file "$work/port" --seconds 30 >"$work/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

for _ in $(seq 100); do  # up to 10 s for the server to listen
  [ -s "$work/port" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "server died:"; cat "$work/server.log"; exit 1; }
  sleep 0.1
done
port=$(cat "$work/port")
url="http://127.0.0.1:$port"
echo "server pid $pid on $url"

scrape() {  # scrape N: body in $work/N.prom, headers in $work/N.headers
  "$curl" --silent --show-error --fail --max-time 10 -D "$work/$1.headers" -o "$work/$1.prom" "$url/metrics"
}
scrape 1
sleep 0.3  # let the workload move the counters
scrape 2

grep -qi '^content-type: text/plain; version=0.0.4' "$work/2.headers" || { echo "bad Content-Type:"; cat "$work/2.headers"; exit 1; }
for n in 1 2; do
  if ! problems=$("$promtool" check metrics <"$work/$n.prom" 2>&1) || [ -n "$problems" ]; then
    echo "promtool check metrics, scrape $n:"; echo "$problems"; exit 1
  fi
done
for family in greenlang_circuit_breaker_calls_total greenlang_circuit_breaker_call_duration_seconds_bucket \
              greenlang_rate_limiter_requests_total greenlang_degradation_tier greenlang_service_health \
              greenlang_bulkhead_in_flight_calls; do
  grep -q "^$family" "$work/2.prom" || { echo "missing $family"; exit 1; }
done

# Counters (…_total, histogram _bucket/_count/_sum) never go backwards between scrapes.
awk '
  FNR == NR { if ($0 !~ /^#/ && $1 ~ /(_total|_bucket|_count|_sum)({|$)/) first[$1] = $2; next }
  $0 !~ /^#/ && ($1 in first) { seen++; if ($2 + 0 < first[$1] + 0) { print "went backwards: " $1 " " first[$1] " -> " $2; bad = 1 } }
  END { if (seen == 0) { print "no counters compared"; exit 1 } exit bad }
' "$work/1.prom" "$work/2.prom"

"$curl" --silent --show-error --fail --max-time 5 "$url/quit" >/dev/null
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then echo "server did not stop on /quit"; exit 1; fi
wait "$pid"
trap - EXIT
echo "promtool check metrics: no problems in two scrapes ($(wc -c <"$work/2.prom") bytes); server stopped"
