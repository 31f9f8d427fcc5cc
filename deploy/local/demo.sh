#!/usr/bin/env bash
# A whole rollout on the local system, under load, decided by the judge:
#   1. a good green (profile v2) goes Shadow -> Canary -> Promoted -> Stable by itself;
#   2. the operator returns live to blue;
#   3. a faulty green (fault injection: flipped sentiment labels) is rolled back by itself;
# then prints the timeline of phases with the verdicts' evidence. Uses deploy/demo-policy.json
# (small samples, short bake) so it fits in a few minutes. Leaves the system running (down.sh stops it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT="${QWEN_PORT:-8080}"
NATS_PORT="${QWEN_NATS_PORT:-4222}"
export QWEN_POLICY="${QWEN_POLICY:-$ROOT/deploy/demo-policy.json}"
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
BASE="http://127.0.0.1:$PORT"
ctl() { "$ROOT/deploy/local/qwenctl" "$@"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

QWEN_PORT=$PORT QWEN_NATS_PORT=$NATS_PORT "$ROOT/deploy/local/up.sh" --restart >/dev/null
echo "System up on $BASE (policy $(basename "$QWEN_POLICY"))."

# Start from a clean, stable, blue-live system.
phase="$(ctl status | field "d['state']['phase']")"
case "$phase" in Shadow|Canary|Paused) ctl abort '{"reason":"demo reset","actor":"demo"}' >/dev/null ;; Promoted) ctl promote '{"actor":"demo"}' >/dev/null ;; esac
if [ "$(ctl status | field "d['state']['live']")" != "blue" ]; then
  ctl start '{"candidate":"blue","reason":"demo reset","actor":"demo"}' >/dev/null
  ctl promote '{"full":true,"actor":"demo"}' >/dev/null; ctl promote '{"actor":"demo"}' >/dev/null
fi
FIRST_VERSION="$(ctl status | field "d['state']['version']")"

wait_for() { # phases to stop at..., with a progress line every 5 s
  local deadline=$((SECONDS + 400)) last=0
  while [ $SECONDS -lt $deadline ]; do
    local s; s="$(ctl status || true)"
    local p; p="$(echo "$s" | field "d['state']['phase']")"
    for want in "$@"; do [ "$p" = "$want" ] && { echo "   -> $p"; return 0; }; done
    if [ $((SECONDS - last)) -ge 5 ]; then
      last=$SECONDS
      echo "   $p, weight $(echo "$s" | field "d['state']['weight']")%, verdict: $(echo "$s" | field "(d.get('verdict') or {}).get('outcome','-') + ': ' + (d.get('verdict') or {}).get('reason','-')")"
    fi
    sleep 1
  done
  echo "   gave up waiting for $*" >&2; return 1
}

python3 "$ROOT/deploy/local/load.py" --url "$BASE" --threads 4 >"$ROOT/.run/logs/demo-load.log" 2>&1 &
LOAD=$!
trap 'kill -TERM $LOAD 2>/dev/null || true' EXIT
echo "Client load running (4 threads, sentiment and multi-turn chat)."

echo
echo "1. Rolling out a good green (profile v2); the judge decides every step."
ctl start '{"candidate":"green","reason":"demo: new prompt profile v2","actor":"demo"}' >/dev/null
wait_for Stable RolledBack Paused

echo
echo "2. The operator returns live to blue."
if [ "$(ctl status | field "d['state']['live']")" != "blue" ]; then
  ctl start '{"candidate":"blue","reason":"demo: back to blue","actor":"demo"}' >/dev/null
  ctl promote '{"full":true,"reason":"demo: operator override","actor":"demo"}' >/dev/null
  ctl promote '{"reason":"demo: close the bake window","actor":"demo"}' >/dev/null
fi
ctl status | field "d['state']['phase'] + ', live ' + d['state']['live']"

echo
echo "3. Replacing green with a faulty build (fault injection: every sentiment label flipped) and rolling it out."
GREEN_PID="$(cat "$ROOT/.run/pids/worker-green.pid")"
kill -TERM "$GREEN_PID"; while kill -0 "$GREEN_PID" 2>/dev/null; do sleep 0.2; done
. "$ROOT/.run/nats-users.env"
Nats__Url="$NATS_URL" Nats__User=worker_green Nats__Password="$QWEN_NATS_WORKER_GREEN_PASSWORD" \
  dotnet "$ROOT/services/worker/bin/Release/net10.0/QwenNats.Worker.dll" --Worker:Colour=green \
  --Worker:ModelPath="$(grep -o 'Loaded model [^ ]*' "$ROOT/.run/logs/worker-blue.log" >/dev/null; ps -o args= -p "$(cat "$ROOT/.run/pids/worker-blue.pid")" | grep -o -- '--Worker:ModelPath=[^ ]*' | cut -d= -f2-)" \
  --Worker:ProfilePath="$ROOT/deploy/profiles/v2.json" --Worker:Threads=1 --Faults:Fraction=1 --Faults:FlipLabels=true \
  >>"$ROOT/.run/logs/worker-green.log" 2>&1 &
echo $! >"$ROOT/.run/pids/worker-green.pid"
until curl -fsS "$BASE/v1/models" 2>/dev/null | grep -q '"colour":"green"'; do sleep 0.5; done
ctl start '{"candidate":"green","reason":"demo: a build that flips labels","actor":"demo"}' >/dev/null
wait_for RolledBack Stable Paused

kill -TERM $LOAD 2>/dev/null || true; wait $LOAD 2>/dev/null || true
trap - EXIT
echo
tail -1 "$ROOT/.run/logs/demo-load.log"

echo
echo "Timeline (qwen.ctl.history):"
ctl history '{"limit":100}' | python3 -c "
import json, sys
first = int(sys.argv[1])
for e in json.load(sys.stdin)['events']:
    if e['state']['version'] <= first: continue
    print(f\"  {e['at'][11:23]}  {e['trigger']:<10} {e['from']:>10} -> {e['to']:<10} {e['cause']:<8} {e['actor']:<8} {e['reason']}\")
" "$FIRST_VERSION"
echo
echo "The faulty green worker is still running; deploy/local/up.sh --restart starts a healthy system, deploy/local/down.sh stops it."
