#!/usr/bin/env bash
# Runs the benchmarks against the locally started system (deploy/local/up.sh) and prints their tables.
#   bench/run.sh              full run (100 switches)
#   bench/run.sh --quick      a few switches: proves the benchmark works (used by CI; numbers not meaningful)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SWITCHES=100
[ "${1:-}" = "--quick" ] && SWITCHES=6
PORT="${QWEN_PORT:-8080}"
PORT2=$((PORT + 1))
NATS_PORT="${QWEN_NATS_PORT:-4222}"

QWEN_PORT=$PORT QWEN_NATS_PORT=$NATS_PORT "$ROOT/deploy/local/up.sh" >/dev/null
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
