#!/usr/bin/env bash
# Two releases shipped on the local system, under client load, through the pipeline command a CI/CD job
# would run (deploy/local/qwenctl rollout), with the judge deciding every step:
#   1. release "v2" (the model with prompt profile v2) goes to the idle colour and the judge takes it live;
#   2. a faulty release (a drill: its workers flip every sentiment label) goes to the idle colour next and
#      the judge rolls it back.
# No process is started or restarted by hand: workers fetch, load and switch releases by themselves. Each
# pipeline prints its progress, the rollout's timeline and the verdict's evidence, and exits 0 (promoted)
# or 3 (rolled back). Uses deploy/demo-policy.json (small samples, short bake) so it fits in a few minutes.
# Leaves the system running (deploy/local/down.sh stops it); its output can be captured: out=$(demo.sh 2>&1).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT="${QWEN_PORT:-8080}"
NATS_PORT="${QWEN_NATS_PORT:-4222}"
export QWEN_POLICY="${QWEN_POLICY:-$ROOT/deploy/demo-policy.json}"
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
BASE="http://127.0.0.1:$PORT"
ctl() { "$ROOT/deploy/local/qwenctl" "$@"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

QWEN_PORT=$PORT QWEN_NATS_PORT=$NATS_PORT "$ROOT/deploy/local/up.sh" --restart >/dev/null </dev/null
echo "System up on $BASE (policy $(basename "$QWEN_POLICY"))."

# A rollout left over from an earlier run is ended first (the pipeline refuses to ship during one).
case "$(ctl status | field "d['state']['phase']")" in
  Shadow|Canary|Paused) ctl abort '{"reason":"demo reset","actor":"demo"}' >/dev/null ;;
  Promoted) ctl promote '{"reason":"demo: close the bake window","actor":"demo"}' >/dev/null ;;
esac
until [ "$(ctl status | field "d['state']['phase']")" = Stable ]; do sleep 0.5; done

. "$ROOT/.run/up.env"   # RUNNING_MODEL: the GGUF up.sh serves
MODEL="$RUNNING_MODEL"
DIGEST="$(sha256sum "$MODEL" | cut -c1-8)"

python3 "$ROOT/deploy/local/load.py" --url "$BASE" --threads 4 </dev/null >"$ROOT/.run/logs/demo-load.log" 2>&1 &
LOAD=$!
trap 'kill -TERM $LOAD 2>/dev/null || true' EXIT
echo "Client load running (4 threads, sentiment and multi-turn chat)."

echo
echo "1. Shipping release v2-demo-$DIGEST ($(basename "$MODEL"), prompt profile v2) to the idle colour."
rc=0
ctl rollout --release "v2-demo-$DIGEST" --model "$MODEL" --profile "$ROOT/deploy/profiles/v2.json" \
  --notes "demo: prompt profile v2" --actor demo --ready-timeout 300 --timeout 400 </dev/null || rc=$?
echo "   qwenctl rollout exited $rc (0: promoted)"

echo
echo "2. Shipping a faulty release (a drill: every sentiment label flipped) to the idle colour."
rc=0
ctl rollout --release "flips-demo-$DIGEST" --model "$MODEL" --profile "$ROOT/deploy/profiles/v2.json" \
  --faults '{"fraction":1,"flip_labels":true}' --notes "demo: a build that flips labels" --actor demo \
  --ready-timeout 300 --timeout 400 </dev/null || rc=$?
echo "   qwenctl rollout exited $rc (3: rolled back)"

kill -TERM $LOAD 2>/dev/null || true; wait $LOAD 2>/dev/null || true
trap - EXIT
echo
tail -1 "$ROOT/.run/logs/demo-load.log"
echo
live="$(ctl status | field "d['state']['live']")"
echo "Live: $live. The idle colour keeps the faulty release until the next deploy; deploy/local/qwenctl releases lists"
echo "every release and where it is deployed. deploy/local/down.sh stops the system."
