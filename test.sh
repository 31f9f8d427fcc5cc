#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests that start real nats-server processes and
# real LLamaSharp workers on ../shared/models/stories260K.gguf (or QWEN_TEST_MODEL), and the web
# console's tests in headless Chromium (/usr/bin/chromium or QWEN_CHROMIUM).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v nats-server >/dev/null 2>&1 || { echo "nats-server is required: apt-get install -y nats-server" >&2; exit 1; }
[ -x "${QWEN_CHROMIUM:-/usr/bin/chromium}" ] || { echo "chromium is required for the console tests: apt-get install -y chromium (or set QWEN_CHROMIUM)" >&2; exit 1; }
# A hung test is reported (with a dump) after 5 minutes instead of stalling the run.
exec dotnet test "$ROOT/QwenNats.sln" -c Release --nologo --blame-hang-timeout 5m "$@"
