#!/usr/bin/env bash
# Runs the README's "First ten minutes" as a newcomer would: every line of its ```bash first-ten-minutes
# blocks, in order, from the repository's root, against the local system that the first of them
# (deploy/local/up.sh) starts. A line passes when it exits 0 and, when it ends with a comment
# `# → text`, its output contains that text. Ends with one line: "readme check: N passed, N failed".
#
# Starts from what a fresh clone has: no running local system and an empty JetStream store (it stops
# one started from this checkout and removes .run/nats first). The README's ports are the defaults;
# with QWEN_PORT set, the commands' port 8080 becomes $QWEN_PORT, and with QWEN_NATS_PORT set the
# operator tool gets NATS_URL for it (up.sh reads both, and QWEN_METRICS_BASE, itself).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mapfile -t commands < <(awk '
  /^```bash first-ten-minutes[[:space:]]*$/ { inblock = 1; next }
  inblock && /^```/ { inblock = 0; next }
  inblock && NF && $1 !~ /^#/ { print }
' README.md)
if [ "${#commands[@]}" -eq 0 ]; then
  echo "readme: no \`\`\`bash first-ten-minutes block in README.md"
  echo "readme check: 0 passed, 1 failed"
  exit 1
fi

port="${QWEN_PORT:-8080}"
# A newcomer's shell has no NATS_URL: one left by an earlier step (CI's smoke test) must not leak in.
if [ -n "${QWEN_NATS_PORT:-}" ]; then export NATS_URL="nats://127.0.0.1:$QWEN_NATS_PORT"; else unset NATS_URL; fi

deploy/local/down.sh --quiet || true
rm -rf .run/nats
# Whatever happens, nothing is left running.
trap 'deploy/local/down.sh --quiet >/dev/null 2>&1 || true' EXIT

passed=0; failed=0
for line in "${commands[@]}"; do
  command="${line//localhost:8080/localhost:$port}"
  command="${command//127.0.0.1:8080/127.0.0.1:$port}"
  expect=""
  if [[ "$line" == *"# → "* ]]; then expect="${line##*# → }"; fi
  out="$(bash -c "$command" 2>&1 </dev/null)"; status=$?
  command="${command%%    #*}"
  if [ "$status" -ne 0 ]; then
    failed=$((failed + 1)); echo "readme: $command: FAILED (exit $status)"; printf '%s\n' "$out" | tail -20
  elif [ -n "$expect" ] && [[ "$out" != *"$expect"* ]]; then
    failed=$((failed + 1)); echo "readme: $command: FAILED (the output does not contain: $expect)"; printf '%s\n' "$out" | tail -20
  else
    passed=$((passed + 1)); echo "readme: $command: ok"
  fi
done
echo "readme check: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
