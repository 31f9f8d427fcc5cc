#!/usr/bin/env bash
# Soak: starts the local system (deploy/local/up.sh), runs mixed client load (chat, streamed chat,
# sentiment, WebSocket conversations) while an operator loop starts rollouts and promotes or rolls them
# back, then prints requests, failures (must be zero), latency per minute and the resident memory of every
# process after a two-minute warm-up and at the end (growth must stay under 10 %), with a per-minute series.
#
#   bench/soak.sh              10 minutes
#   bench/soak.sh 30           30 minutes
#   bench/soak.sh --short      45 seconds, for CI: proves the soak runs; memory growth is only reported
#
# Ports: QWEN_PORT (default 18100), QWEN_NATS_PORT (default 14242). The report is also written to
# bench/results/soak-<time>.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_TOTAL=600; WARMUP=120; MAX_GROWTH=10; CYCLE=20
case "${1:-}" in
  --short) SECONDS_TOTAL=45; WARMUP=10; MAX_GROWTH=1000; CYCLE=12 ;;
  "") ;;
  *) SECONDS_TOTAL=$(( $1 * 60 )) ;;
esac
PORT="${QWEN_PORT:-18100}"
NATS_PORT="${QWEN_NATS_PORT:-14242}"

QWEN_PORT=$PORT QWEN_NATS_PORT=$NATS_PORT "$ROOT/deploy/local/up.sh" --restart >/dev/null
trap '"$ROOT/deploy/local/down.sh" --quiet' EXIT
. "$ROOT/.run/nats-users.env"

dotnet build "$ROOT/bench/QwenNats.Bench" -c Release -nologo -v quiet -clp:ErrorsOnly >/dev/null
mkdir -p "$ROOT/bench/results"
REPORT="$ROOT/bench/results/soak-$(date -u +%Y%m%dT%H%M%SZ).md"
echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(dotnet --version) SDK, nats-server $(nats-server --version | awk '{print $2}'), model $(basename "${QWEN_MODEL:-stories260K.gguf}")" | tee "$REPORT"
echo | tee -a "$REPORT"
set +e
dotnet "$ROOT/bench/QwenNats.Bench/bin/Release/net10.0/QwenNats.Bench.dll" soak \
  --nats "nats://operator:$QWEN_NATS_OPERATOR_PASSWORD@127.0.0.1:$NATS_PORT" --ingress "http://127.0.0.1:$PORT" \
  --seconds "$SECONDS_TOTAL" --warmup "$WARMUP" --cycle "$CYCLE" --max-growth "$MAX_GROWTH" --pids "$ROOT/.run/pids" | tee -a "$REPORT"
status=${PIPESTATUS[0]}
set -e
echo "report: $REPORT"
exit "$status"
