#!/usr/bin/env bash
# Stops exactly what deploy/local/up.sh started (the pids in .run/pids), services first, NATS last.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PIDS="$ROOT/.run/pids"
QUIET="${1:-}"
[ -d "$PIDS" ] || { [ "$QUIET" = "--quiet" ] || echo "Nothing to stop."; exit 0; }

stop() {
  local f="$PIDS/$1.pid"
  [ -f "$f" ] || return 0
  local pid; pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    [ "$QUIET" = "--quiet" ] || echo "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

for name in ingress worker-blue worker-green judge promoter; do stop "$name"; done
for f in "$PIDS"/*.pid; do [ -e "$f" ] && [ "$(basename "$f" .pid)" != nats ] && stop "$(basename "$f" .pid)"; done
stop nats
rm -f "$ROOT/.run/up.env"
exit 0
