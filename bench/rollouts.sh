#!/usr/bin/env bash
# Repeated judged rollouts under client load: how often a good candidate is promoted, rolled back or
# paused by the judge, and how long each rollout's judged part (Shadow and every canary step) takes.
#
#   bench/rollouts.sh [--count N] [--green v1|v2] [--policy FILE]
#
#   --count N     rollouts, alternating the candidate colour (default 10)
#   --green v1    the idle colour is given release v1-<digest>, live's own: an A/A run (both colours
#                 identical); v2 (default): release v2-<digest>, a new profile
#   --policy F    rollout policy (default deploy/rollout-policy.json, the shipped one)
#
# Starts the local system with deploy/local/up.sh --restart (ports QWEN_PORT, QWEN_NATS_PORT,
# QWEN_METRICS_BASE as up.sh reads them), runs deploy/local/load.py (4 threads) throughout, and for each
# rollout: start, wait until Promoted / RolledBack / Paused, then close the bake window at once with
# `promote` (the bake is a timer, nothing is judged in it). Prints one line per rollout and a summary;
# exits non-zero if any rollout was rolled back or paused. Stops the system at the end.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT=10; GREEN=v2; POLICY="$ROOT/deploy/rollout-policy.json"
while [ $# -gt 0 ]; do
  case "$1" in
    --count) COUNT="$2"; shift 2 ;;
    --green) GREEN="$2"; shift 2 ;;
    --policy) POLICY="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$GREEN" in v1|v2) ;; *) echo "--green must be v1 or v2" >&2; exit 2 ;; esac

PORT="${QWEN_PORT:-8080}"; NATS_PORT="${QWEN_NATS_PORT:-4222}"
export NATS_URL="nats://127.0.0.1:$NATS_PORT" QWEN_POLICY="$POLICY"
ctl() { "$ROOT/deploy/local/qwenctl" "$@"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

QWEN_PORT=$PORT QWEN_NATS_PORT=$NATS_PORT "$ROOT/deploy/local/up.sh" --restart >/dev/null || { echo "up.sh failed" >&2; exit 1; }
trap '[ -n "${LOAD:-}" ] && kill -TERM "$LOAD" 2>/dev/null; "$ROOT/deploy/local/down.sh" --quiet >/dev/null 2>&1' EXIT
# The idle colour gets the release under test (v1-<digest>: blue's own, an A/A run; v2-<digest>: a new profile),
# whatever an earlier run left assigned; the first rollout starts once its pool serves it.
. "$ROOT/.run/up.env"
# up.sh's release ids (RELEASE_V1, RELEASE_V2 in up.env) for the profile named by --green.
release_var="RELEASE_${GREEN^^}"; release="${!release_var:?up.sh registered no release for profile $GREEN}"
idle="$([ "$(ctl status | field "d['state']['live']")" = blue ] && echo green || echo blue)"
ctl deploy "{\"colour\":\"$idle\",\"release\":\"$release\",\"reason\":\"bench: the release under test\",\"actor\":\"bench\"}" >/dev/null \
  || { echo "deploying $release to $idle failed" >&2; exit 1; }
for _ in $(seq 1 120); do
  ctl releases | field "[p for p in d['pools'] if p['colour']=='$idle'][0]['ready']" 2>/dev/null | grep -q True && break
  sleep 1
done
python3 "$ROOT/deploy/local/load.py" --url "http://127.0.0.1:$PORT" --threads 4 >"$ROOT/.run/logs/rollouts-load.log" 2>&1 </dev/null &
LOAD=$!
echo "rollouts: $COUNT, $idle serves $release, policy $(basename "$POLICY"), load 4 threads"

promoted=0; rolled_back=0; paused=0; other=0
for i in $(seq 1 "$COUNT"); do
  live="$(ctl status | field "d['state']['live']")"
  cand=$([ "$live" = blue ] && echo green || echo blue)
  t0=$SECONDS
  ctl start "{\"candidate\":\"$cand\",\"reason\":\"bench rollout $i\",\"actor\":\"bench\"}" >/dev/null
  phase=""
  while [ $((SECONDS - t0)) -lt 1800 ]; do
    s="$(ctl status 2>/dev/null || true)"
    phase="$(echo "$s" | field "d['state']['phase']" 2>/dev/null || echo "?")"
    case "$phase" in Promoted|RolledBack|Paused|Stable) break ;; esac
    sleep 2
  done
  took=$((SECONDS - t0))
  reason="$(echo "$s" | field "d['state'].get('reason','')" 2>/dev/null | cut -c1-160)"
  echo "rollout $i: $live -> $cand: $phase after ${took}s ($reason)"
  case "$phase" in
    Promoted) promoted=$((promoted + 1)); ctl promote '{"reason":"bench: close the bake window","actor":"bench"}' >/dev/null ;;
    RolledBack) rolled_back=$((rolled_back + 1)); sleep 35 ;;  # the RolledBack hold returns to Stable
    Paused) paused=$((paused + 1)); ctl abort '{"reason":"bench","actor":"bench"}' >/dev/null ;;
    *) other=$((other + 1)); ctl abort '{"reason":"bench","actor":"bench"}' >/dev/null 2>&1 ;;
  esac
  sleep 2
done
kill -TERM "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null
echo "load: $(tail -1 "$ROOT/.run/logs/rollouts-load.log")"
echo "summary: $promoted promoted, $rolled_back rolled back, $paused paused, $other unfinished of $COUNT"
[ $((rolled_back + paused + other)) -eq 0 ]
