#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests that start real nats-server processes and
# real LLamaSharp workers on ../shared/models/stories260K.gguf (or QWEN_TEST_MODEL), and the web
# console's tests in headless Chromium (/usr/bin/chromium or QWEN_CHROMIUM).
# Installs nats-server, chromium and node (with npm) first when they are missing (deploy/local/prereqs.sh, apt-get).
# Arguments go to `dotnet test`, e.g. ./test.sh --filter "FullyQualifiedName~Unit".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/deploy/local/prereqs.sh" nats-server chromium node
command -v dotnet >/dev/null 2>&1 || { echo "The .NET 10 SDK (dotnet) is required." >&2; exit 1; }
# A hung test is reported (with a dump) after 5 minutes instead of stalling the run.
exec dotnet test "$ROOT/QwenNats.sln" -c Release --nologo --blame-hang-timeout 5m "$@"
