#!/usr/bin/env bash
# Starts the whole QwenNats system on this machine, on loopback:
#   nats-server (JetStream, store in .run/nats), the ingress, the blue and green worker pools (QWEN_WORKERS
#   each), the judge and the promoter. Workers start with no model: up.sh uploads QWEN_MODEL to the model store,
#   registers two releases of it (v1-<digest> with profile v1, v2-<digest> with profile v2; the digest is of the model
#   and the profile file, so an edited profile is a new release) and, on a first
#   start, deploys v1 to blue (live) and v2 to green; every worker fetches its colour's release over NATS.
#   A system started before keeps the releases its colours were given (ship new ones with qwenctl rollout).
# Logs: .run/logs/<service>.log. Stop with deploy/local/down.sh.
#
# usage: deploy/local/up.sh [--restart] [--show-token] [--help]
#   --restart      stop a system this checkout already runs (deploy/local/down.sh) and start afresh
#   --show-token   also print the console's operator token (by default only the file that holds it)
#
# Before starting anything it checks that every port it needs is free (ingress, NATS, metrics) and
# installs nats-server and curl when missing (deploy/local/prereqs.sh). Run again while the system
# is up, it reports the running system in one line and changes nothing; a start that fails stops
# everything it started.
#
# Settings (environment):
#   QWEN_MODEL         GGUF file to serve (default: ../shared/models/stories260K.gguf when present)
#   QWEN_PORT          ingress HTTP port (default 8080)
#   QWEN_NATS_PORT     NATS port (default 4222)
#   QWEN_THREADS       CPU threads per worker (default: cores / 2, at least 1)
#   QWEN_CTX           context tokens per request (default 2048)
#   QWEN_SLOTS         requests decoded together per worker (default 2)
#   QWEN_WORKERS       workers per colour (default 1); each loads its colour's release by itself
#   QWEN_POLICY        rollout policy for the judge and promoter (default deploy/rollout-policy.json)
#   QWEN_METRICS_BASE  Prometheus ports: base+1 blue worker, base+2 green worker, base+3 judge, base+4 promoter, and
#                      base+10, base+11, ... the second and later workers of each colour (default 9100)
#   QWEN_OPERATOR_TOKEN  token that unlocks the web console's operator actions and lets a tester choose a colour
#                      (X-Qwen-Colour) (default: a random one, written to .run/operator-token); set it to "none"
#                      for a read-only console and no colour choice
#   QWEN_SHOW_TOKEN    1 prints the operator token too, like --show-token (default: only where it is)
#   QWEN_GREEN_ARGS    extra arguments for the green workers (e.g. fault injection: --Faults:Fraction=1 --Faults:FlipLabels=true)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN="$ROOT/.run"
RESTART=""
SHOW_TOKEN="${QWEN_SHOW_TOKEN:-}"
[ "$SHOW_TOKEN" = 0 ] && SHOW_TOKEN=""
for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,/^set -euo pipefail/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    --restart) RESTART=1 ;;
    --show-token) SHOW_TOKEN=1 ;;
    *) printf 'up.sh: unknown argument %s (deploy/local/up.sh --help lists the flags and settings)\n' "$arg" >&2; exit 2 ;;
  esac
done
PORT="${QWEN_PORT:-8080}"
NATS_PORT="${QWEN_NATS_PORT:-4222}"
CORES="$(nproc 2>/dev/null || echo 2)"
THREADS="${QWEN_THREADS:-$(( CORES / 2 > 0 ? CORES / 2 : 1 ))}"
CTX="${QWEN_CTX:-2048}"
SLOTS="${QWEN_SLOTS:-2}"
WORKERS="${QWEN_WORKERS:-1}"
case "$WORKERS" in ''|*[!0-9]*|0) printf 'up.sh: QWEN_WORKERS must be a whole number of workers per colour (1 or more), not %s\n' "$WORKERS" >&2; exit 2 ;; esac
METRICS_BASE="${QWEN_METRICS_BASE:-9100}"
POLICY="${QWEN_POLICY:-$ROOT/deploy/rollout-policy.json}"
GOLDEN="$ROOT/deploy/golden/sentiment.jsonl"
GOLDEN_CHAT="$ROOT/deploy/golden/chat.jsonl"

say() { printf '%s\n' "$*"; }

# --- model -------------------------------------------------------------------------------
DEFAULT_MODEL="$(cd "$ROOT/.." && pwd)/shared/models/stories260K.gguf"
MODEL="${QWEN_MODEL:-}"
if [ -z "$MODEL" ]; then
  if [ -f "$DEFAULT_MODEL" ]; then
    MODEL="$DEFAULT_MODEL"
  else
    cat >&2 <<MSG
No model found. Download a Qwen GGUF and point QWEN_MODEL at it, for example:

  mkdir -p ~/models && cd ~/models
  curl -LO https://huggingface.co/Qwen/Qwen1.5-0.5B-Chat-GGUF/resolve/main/qwen1_5-0_5b-chat-q4_k_m.gguf
  QWEN_MODEL=~/models/qwen1_5-0_5b-chat-q4_k_m.gguf $0
MSG
    exit 1
  fi
fi
[ -f "$MODEL" ] || { say "QWEN_MODEL=$MODEL does not exist" >&2; exit 1; }
MODEL="$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")"

# --- one up.sh at a time ------------------------------------------------------------------
mkdir -p "$RUN"
claim() { (set -C; echo $$ >"$RUN/starting") 2>/dev/null; }
if ! claim; then
  other="$(cat "$RUN/starting" 2>/dev/null || true)"
  if [ -n "$other" ] && kill -0 "$other" 2>/dev/null; then
    say "up.sh: another deploy/local/up.sh (pid $other) is starting the system right now; wait for it, or stop it with deploy/local/down.sh" >&2
    exit 1
  fi
  rm -f "$RUN/starting"   # left by an up.sh that is gone
  claim || { say "up.sh: another deploy/local/up.sh is starting the system right now; wait for it" >&2; exit 1; }
fi
started=""; up_ok=""
cleanup() {
  rm -f "$RUN/starting"
  # A start that failed half-way stops everything it started: never a half-started pair.
  if [ -n "$started" ] && [ -z "$up_ok" ]; then
    "$ROOT/deploy/local/down.sh" --quiet >/dev/null 2>&1 || true
    rm -f "$RUN/up.env"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- a system already running from this checkout -------------------------------------------
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
running=0; stale=0
for f in "$RUN"/pids/*.pid; do
  [ -e "$f" ] || continue
  if alive "$f"; then running=$((running + 1)); else stale=$((stale + 1)); fi
done
if [ "$running" -gt 0 ] && [ -z "$RESTART" ]; then
  RUNNING_PORT="$PORT"; RUNNING_NATS_PORT="$NATS_PORT"
  [ -f "$RUN/up.env" ] && . "$RUN/up.env"
  if [ "$stale" -eq 0 ] && curl -fsS "http://127.0.0.1:$RUNNING_PORT/readyz" >/dev/null 2>&1; then
    token=""
    if [ -n "$SHOW_TOKEN" ] && [ -f "$RUN/operator-token" ]; then token=", operator token $(cat "$RUN/operator-token")"; fi
    other=""
    if [ "$RUNNING_PORT" != "$PORT" ] || [ "$RUNNING_NATS_PORT" != "$NATS_PORT" ]; then other=" with the settings given now"; fi
    say "QwenNats is already running: console http://127.0.0.1:$RUNNING_PORT/, NATS nats://127.0.0.1:$RUNNING_NATS_PORT ($running processes, logs $RUN/logs/$token); nothing changed — deploy/local/down.sh stops it, deploy/local/up.sh --restart restarts it$other"
    exit 0
  fi
  if [ "$stale" -gt 0 ]; then what="$running of $((running + stale)) processes alive"; else what="the ingress on port $RUNNING_PORT is not ready"; fi
  say "up.sh: found a partly running system ($what); stopping it and starting afresh"
fi
if [ "$running" -gt 0 ] || [ "$stale" -gt 0 ]; then
  [ -n "$RESTART" ] && [ "$running" -gt 0 ] && say "up.sh --restart: stopping the running system ($running processes) first"
  "$ROOT/deploy/local/down.sh" --quiet || true
fi

# --- every port is free before anything starts ---------------------------------------------
# Worker i (1-based) of a colour: metrics on base+1 (blue) / base+2 (green) for the first, base+10+... after.
worker_port() { # colour, i
  local c=0; [ "$1" = green ] && c=1
  if [ "$2" -eq 1 ]; then echo $((METRICS_BASE + 1 + c)); else echo $((METRICS_BASE + 10 + 2 * ($2 - 2) + c)); fi
}
worker_name() { if [ "$2" -eq 1 ]; then echo "worker-$1"; else echo "worker-$1-$2"; fi; }
port_entries=("$PORT:QWEN_PORT:ingress" "$NATS_PORT:QWEN_NATS_PORT:NATS" \
             "$((METRICS_BASE + 3)):QWEN_METRICS_BASE:judge metrics" "$((METRICS_BASE + 4)):QWEN_METRICS_BASE:promoter metrics")
for colour in blue green; do
  for i in $(seq 1 "$WORKERS"); do port_entries+=("$(worker_port "$colour" "$i"):QWEN_METRICS_BASE:$(worker_name "$colour" "$i") metrics"); done
done
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for entry in "${port_entries[@]}"; do
  p="${entry%%:*}"; rest="${entry#*:}"; setting="${rest%%:*}"; what="${rest#*:}"
  if port_in_use "$p"; then
    if [ "$setting" = QWEN_METRICS_BASE ]; then
      say "up.sh: port $p ($what, $setting+$((p - METRICS_BASE))) is in use by another process; set $setting to another base (it uses base+1 to base+4 and base+10 up for more workers), e.g. $setting=$((METRICS_BASE + 100))" >&2
    else
      say "up.sh: port $p ($what, $setting) is in use by another process; set $setting to another port, e.g. $setting=$((p + 10000 < 65536 ? p + 10000 : p - 10000))" >&2
    fi
    exit 1
  fi
done

# --- prerequisites -----------------------------------------------------------------------
"$ROOT/deploy/local/prereqs.sh" nats-server curl
command -v dotnet >/dev/null 2>&1 || { say "The .NET 10 SDK (dotnet) is required." >&2; exit 1; }

# --- start: whatever fails from here on stops everything that was started -------------------
mkdir -p "$RUN/logs" "$RUN/pids" "$RUN/nats"
started=1

say "Building (Release)..."
dotnet build "$ROOT/QwenNats.sln" -c Release -nologo -v quiet -clp:ErrorsOnly </dev/null >"$RUN/logs/build.log" 2>&1 || {
  say "Build failed; see $RUN/logs/build.log" >&2; tail -20 "$RUN/logs/build.log" >&2; exit 1; }

bin() { echo "$ROOT/services/$1/bin/Release/net10.0/$2.dll"; }

start() { # name, log prefix, command...
  local name="$1"; shift
  local prefix="$1"; shift
  # No started process keeps the caller's stdin, stdout or stderr open (out=$(up.sh 2>&1) returns).
  if [ -n "$prefix" ]; then
    "$@" </dev/null > >(exec sed -u "s/^/$prefix /" >>"$RUN/logs/$name.log" 2>&1) 2>&1 &
  else
    "$@" </dev/null >>"$RUN/logs/$name.log" 2>&1 &
  fi
  echo $! >"$RUN/pids/$name.pid"
}

NATS_URL="nats://127.0.0.1:$NATS_PORT"
# One NATS user per service with least-privilege permissions (deploy/nats/auth.conf); fresh random
# passwords for every run, kept in .run/nats-users.env (readable by this user only).
# nats-server parses a password from the environment as a configuration value: it must start with a letter
# (a leading digit makes it a number and the server refuses to start).
secret() { printf 'q%s' "$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)"; }
(umask 077; : >"$RUN/nats-users.env")
for user in INGRESS WORKER_BLUE WORKER_GREEN JUDGE PROMOTER OPERATOR VIEWER; do
  printf 'QWEN_NATS_%s_PASSWORD=%s\n' "$user" "$(secret)" >>"$RUN/nats-users.env"
done
. "$RUN/nats-users.env"   # shell variables only: each service gets just its own password below
start nats "[nats]" env $(cat "$RUN/nats-users.env") nats-server -c "$ROOT/deploy/nats/auth.conf" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$RUN/nats" -m 0 -n qwen-local
for _ in $(seq 1 50); do (echo >/dev/tcp/127.0.0.1/"$NATS_PORT") 2>/dev/null && break; sleep 0.1; done

export Nats__Url="$NATS_URL"
OPERATOR_TOKEN="${QWEN_OPERATOR_TOKEN:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}"
if [ "$OPERATOR_TOKEN" = "none" ]; then
  OPERATOR_TOKEN=""; rm -f "$RUN/operator-token"
else
  (umask 077; printf '%s\n' "$OPERATOR_TOKEN" >"$RUN/operator-token")
fi
# Passed through the environment, not the command line, so it does not show in ps.
Console__OperatorToken="$OPERATOR_TOKEN" Console__NatsUser=operator Console__NatsPassword="$QWEN_NATS_OPERATOR_PASSWORD" \
Nats__User=ingress Nats__Password="$QWEN_NATS_INGRESS_PASSWORD" \
start ingress "" dotnet "$(bin ingress QwenNats.Ingress)" --Ingress:Port="$PORT" --Ingress:LiveColour=blue
# Workers start with no model and load their colour's assigned release (fetched over NATS into .run/models).
for colour in blue green; do
  user="QWEN_NATS_WORKER_$(echo "$colour" | tr a-z A-Z)_PASSWORD"
  extra=""; [ "$colour" = green ] && extra="${QWEN_GREEN_ARGS:-}"
  for i in $(seq 1 "$WORKERS"); do
    Nats__User="worker_$colour" Nats__Password="${!user}" \
    start "$(worker_name "$colour" "$i")" "" dotnet "$(bin worker QwenNats.Worker)" --Worker:Colour="$colour" --Worker:WorkerId="$colour-$i" \
      --Worker:ModelCacheDir="$RUN/models" --Worker:Threads="$THREADS" --Worker:ContextSize="$CTX" --Worker:Slots="$SLOTS" \
      --Metrics:Port="$(worker_port "$colour" "$i")" $extra
  done
done
Nats__User=judge Nats__Password="$QWEN_NATS_JUDGE_PASSWORD" \
start judge "" dotnet "$(bin judge QwenNats.Judge)" --Judge:PolicyPath="$POLICY" --Metrics:Port="$((METRICS_BASE + 3))"
Nats__User=promoter Nats__Password="$QWEN_NATS_PROMOTER_PASSWORD" \
start promoter "" dotnet "$(bin promoter QwenNats.Promoter)" --Promoter:PolicyPath="$POLICY" --Promoter:GoldenPath="$GOLDEN" --Promoter:GoldenChatPath="$GOLDEN_CHAT" \
  --Metrics:Port="$((METRICS_BASE + 4))"

# --- releases: the model uploaded over NATS, two releases, a colour's first release -----------
ctl() { NATS_URL="$NATS_URL" QWEN_CTL_USERS_FILE="$RUN/nats-users.env" "$ROOT/deploy/local/qwenctl" "$@"; }
for _ in $(seq 1 120); do ctl status >/dev/null 2>&1 && break; sleep 0.5; done
ctl status >/dev/null 2>&1 || { say "No promoter answered in 60 s; see $RUN/logs/promoter.log" >&2; exit 1; }
# A release id names what it holds and never changes meaning: <profile>-<digest of the model and the profile file>,
# so an edited profile (or another model) is a new release, never a clash with one a store already has.
MODEL_SHA="$(sha256sum "$MODEL" | cut -c1-64)"
release_of() { echo "$1-$( { echo "$MODEL_SHA"; cat "$ROOT/deploy/profiles/$1.json"; } | sha256sum | cut -c1-8)"; }
RELEASE_V1="$(release_of v1)"; RELEASE_V2="$(release_of v2)"
say "Uploading $(basename "$MODEL") to the model store and registering releases $RELEASE_V1 and $RELEASE_V2..."
for profile in v1 v2; do
  release="$(release_of $profile)"
  ctl register --release "$release" --model "$MODEL" --profile "$ROOT/deploy/profiles/$profile.json" \
    --notes "up.sh: $(basename "$MODEL") with prompt profile $profile" --actor up.sh >>"$RUN/logs/releases.log" 2>&1 || {
    say "Registering release $release failed; see $RUN/logs/releases.log" >&2; tail -5 "$RUN/logs/releases.log" >&2; exit 1; }
done
# A first start assigns them; a store that already has assignments (an earlier run's .run/nats) keeps them, as a
# restarted system keeps serving what its last rollout left, and the message at the end says so.
KEPT=""
for pair in blue:v1 green:v2; do
  wanted="$(release_of ${pair#*:})"
  reply="$(ctl deploy "{\"colour\":\"${pair%%:*}\",\"release\":\"$wanted\",\"bootstrap\":true,\"actor\":\"up.sh\",\"reason\":\"first start\"}" 2>&1)" \
    || { printf '%s\n' "$reply" >>"$RUN/logs/releases.log"; say "Deploying to ${pair%%:*} failed; see $RUN/logs/releases.log" >&2; tail -20 "$RUN/logs/releases.log" >&2; exit 1; }
  printf '%s\n' "$reply" >>"$RUN/logs/releases.log"
  assigned="$(printf '%s\n' "$reply" | grep -o '"release": *"[^"]*"' | head -1 | sed 's/.*"\([^"]*\)"$/\1/')"
  [ -n "$assigned" ] && [ "$assigned" != "$wanted" ] && KEPT="$KEPT ${pair%%:*}=$assigned"
done

# --- wait until ready --------------------------------------------------------------------
say "Waiting for the ingress and both pools ($WORKERS worker(s) each load their colour's release)..."
ready=""
for _ in $(seq 1 240); do
  for f in "$RUN"/pids/*.pid; do
    pid="$(cat "$f")"
    if ! kill -0 "$pid" 2>/dev/null; then
      name="$(basename "$f" .pid)"
      say "$name exited during start-up; last lines of $RUN/logs/$name.log:" >&2
      tail -20 "$RUN/logs/$name.log" >&2
      exit 1
    fi
  done
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 \
     && curl -fsS "http://127.0.0.1:$PORT/v1/models" 2>/dev/null | grep -q '"colour":"green"' \
     && [ "$(ctl status 2>/dev/null | grep -c '"ready": true')" -ge 2 ]; then
    ready=1; break
  fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  say "The system did not become ready in 120 s; stopped it again; see $RUN/logs/" >&2
  exit 1
fi

up_ok=1
NATS_URL_HINT=""; [ "$NATS_PORT" != 4222 ] && NATS_URL_HINT="NATS_URL=$NATS_URL "
printf 'RUNNING_PORT=%s\nRUNNING_NATS_PORT=%s\nRUNNING_MODEL=%q\nRELEASE_V1=%s\nRELEASE_V2=%s\n' "$PORT" "$NATS_PORT" "$MODEL" "$RELEASE_V1" "$RELEASE_V2" >"$RUN/up.env"
if [ -z "$OPERATOR_TOKEN" ]; then
  token_line="none: the console is read-only (QWEN_OPERATOR_TOKEN=none)"
elif [ -n "$SHOW_TOKEN" ]; then
  token_line="console operator token $OPERATOR_TOKEN (also in $RUN/operator-token)"
else
  token_line="console operator token in $RUN/operator-token (cat it, or up.sh --show-token prints it)"
fi

KEPT_MSG=""
if [ -n "$KEPT" ]; then
  KEPT_MSG="
  KEPT      the store in $RUN/nats is an earlier run's, and its pools keep what they served:$KEPT
            so this model is registered but NOT served yet. Ship it: deploy/local/qwenctl rollout --release $RELEASE_V2,
            or start afresh: deploy/local/down.sh && rm -rf $RUN/nats && deploy/local/up.sh"
fi

cat <<MSG

QwenNats is up.
  console   http://127.0.0.1:$PORT/
  token     $token_line
  ingress   http://127.0.0.1:$PORT   (health /healthz, readiness /readyz, models /v1/models)
  websocket ws://127.0.0.1:$PORT/ws/chat
  nats      $NATS_URL  (JetStream store $RUN/nats; users and permissions deploy/nats/auth.conf, passwords $RUN/nats-users.env)
  operator  ${NATS_URL_HINT}deploy/local/qwenctl status   (--help lists its verbs; uses the operator user from $RUN/nats-users.env)
  model     $MODEL
  releases  $RELEASE_V1 (profile v1) and $RELEASE_V2 (profile v2) of this model; deploy/local/qwenctl releases shows what each colour serves, qwenctl rollout --help how to ship a new one$KEPT_MSG
  metrics   http://127.0.0.1:$PORT/metrics, workers :$((METRICS_BASE + 1)) :$((METRICS_BASE + 2)), judge :$((METRICS_BASE + 3)), promoter :$((METRICS_BASE + 4))
  logs      $RUN/logs/   stop: deploy/local/down.sh

Try:
  curl -s http://127.0.0.1:$PORT/v1/sentiment -d '{"input":"今天心情真好"}'
  curl -s http://127.0.0.1:$PORT/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hello!"}],"max_tokens":64}'
  curl -sN http://127.0.0.1:$PORT/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hello!"}],"stream":true}'
  curl -s http://127.0.0.1:$PORT/v1/chat/completions -H 'X-Qwen-Colour: green' -H "Authorization: Bearer \$(cat $RUN/operator-token)" -d '{"messages":[{"role":"user","content":"Hello!"}]}'
MSG
