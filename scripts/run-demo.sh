#!/usr/bin/env bash
# scripts/run-demo.sh -- what `make run` runs: the demo upstream in the background, hourglass in the foreground.
#
# Usage: bash scripts/run-demo.sh [hourglass flags...]
#
# Starts demo/upstream.py on 127.0.0.1:$DEMO_PORT, waits (at most 5 s) until
# it answers, prints curl lines that show each timeout at work, then runs the
# proxy with --listen 127.0.0.1:8080 --upstream 127.0.0.1:$DEMO_PORT (each
# left out when given among the arguments) followed by the arguments. The
# proxy's output goes to the terminal. When the proxy exits, or on Ctrl-C, the
# demo upstream is stopped; the script exits with the proxy's status.
#
# With an --upstream among the arguments there is no demo: the demo upstream
# is not started, and one line says where the proxy forwards. -h, --help, -V,
# --version, -t and --check-config run the proxy alone (it answers and exits).
#
# Environment:
#   HOURGLASS_BIN  the proxy binary (default build/hourglass)
#   DEMO_PORT      port of the demo upstream on 127.0.0.1 (default 9001)
#   PYTHON         Python 3.11+ for the demo upstream (default /usr/bin/python3,
#                  else python3 from PATH)
# shellcheck disable=SC2317  # the functions below run from traps
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

HOURGLASS_BIN=${HOURGLASS_BIN:-build/hourglass}
DEMO_PORT=${DEMO_PORT:-9001}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
PROXY_LISTEN_DEFAULT=127.0.0.1:8080
WAIT_STEPS=50   # 50 x 0.1 s

say() { printf 'run-demo: %s\n' "$*" >&2; }
die() { say "$@"; exit 1; }

# ---- checks ----------------------------------------------------------------

if ! [[ $DEMO_PORT =~ ^[0-9]{1,5}$ ]] || (( 10#$DEMO_PORT < 1 || 10#$DEMO_PORT > 65535 )); then
    die "DEMO_PORT must be a port number from 1 to 65535, not '$DEMO_PORT'"
fi
DEMO_PORT=$((10#$DEMO_PORT))

if [[ $HOURGLASS_BIN != */* ]]; then
    resolved=$(command -v -- "$HOURGLASS_BIN" || true)
    [[ -n $resolved ]] || die "HOURGLASS_BIN=$HOURGLASS_BIN is not a command on PATH"
    HOURGLASS_BIN=$resolved
fi
if [[ ! -f $HOURGLASS_BIN || ! -x $HOURGLASS_BIN ]]; then
    die "$HOURGLASS_BIN is missing or not executable: build it first with 'make' (or point HOURGLASS_BIN at a binary)"
fi

# The proxy's own questions need no demo: it answers them and exits.
for arg in "$@"; do
    case $arg in
        -h|--help|-V|--version|-t*|--check-config|--check-config=*) exec "$HOURGLASS_BIN" "$@" ;;
    esac
done

# What the user's arguments already say.
user_listen='' user_upstreams=() expect=''
for arg in "$@"; do
    if [[ -n $expect ]]; then
        [[ $expect == listen && -z $user_listen ]] && user_listen=$arg
        [[ $expect == upstream ]] && user_upstreams+=("$arg")
        expect=
        continue
    fi
    case $arg in
        --listen) expect=listen ;;
        --listen=*) [[ -n $user_listen ]] || user_listen=${arg#--listen=} ;;
        --upstream) expect=upstream ;;
        --upstream=*) user_upstreams+=("${arg#--upstream=}") ;;
        --) break ;;
    esac
done

# The demo upstream only when the user names no upstream of their own.
demo=1
(( ${#user_upstreams[@]} == 0 )) || demo=

proxy_args=()
[[ -n $user_listen ]] || proxy_args+=(--listen "$PROXY_LISTEN_DEFAULT")
[[ -z $demo ]] || proxy_args+=(--upstream "127.0.0.1:$DEMO_PORT")

# Where curl should go: a wildcard listen address is reached on loopback.
proxy_addr=${user_listen:-$PROXY_LISTEN_DEFAULT}
case $proxy_addr in
    0.0.0.0:*) proxy_addr=127.0.0.1:${proxy_addr#0.0.0.0:} ;;
    '[::]:'*) proxy_addr="[::1]:${proxy_addr#\[::\]:}" ;;
esac
base="http://$proxy_addr"

# ---- the demo upstream ----------------------------------------------------

if [[ -n $demo ]]; then
    command -v -- "$PYTHON" >/dev/null 2>&1 \
        || die "$PYTHON not found: the demo upstream needs Python 3.11 or later (Debian: apt-get install python3), or set PYTHON"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || die "the demo upstream needs Python 3.11 or later; $PYTHON is $("$PYTHON" -V 2>&1 || echo unusable); set PYTHON to another"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hourglass-demo.XXXXXX")
upstream_pid=
proxy_pid=

# Sends signal $2 to pid $1 and polls, at most $3 tenths of a second, until it
# is gone; then kills it. No `wait`: bash reaps its children by itself, and a
# `wait` after a trap has cut another one short can hang (bash 5.2).
stop_pid() {
    local pid=$1 sig=$2 steps=$3 i
    kill -"$sig" "$pid" 2>/dev/null || return 0
    for ((i = 0; i < steps; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    say "process $pid still runs $((steps / 10)) s after SIG$sig: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM HUP
    if [[ -n $proxy_pid ]]; then stop_pid "$proxy_pid" TERM 50; fi
    if [[ -n $upstream_pid ]]; then stop_pid "$upstream_pid" TERM 30; fi
    rm -rf -- "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_help() {
    say "if port $DEMO_PORT is taken, see which process holds it:  ss -ltnp 'sport = :$DEMO_PORT'"
    say "then stop that process, or run the demo on another port:  DEMO_PORT=9002 make run"
}

# Starts the demo upstream and waits until it answers; exits on failure.
start_demo_upstream() {
    local i ready=
    if port_answers "$DEMO_PORT"; then
        say "port $DEMO_PORT on 127.0.0.1 is already in use, so the demo upstream cannot listen there"
        port_help
        exit 1
    fi

    # Its stdout (the readiness line) goes to a file, its request log (stderr) to
    # the terminal, next to the proxy's. --exit-with-parent: it also goes away if
    # this script is killed outright.
    "$PYTHON" demo/upstream.py --listen "127.0.0.1:$DEMO_PORT" --exit-with-parent >"$tmp/upstream.out" &
    upstream_pid=$!

    for ((i = 0; i < WAIT_STEPS; i++)); do
        if ! kill -0 "$upstream_pid" 2>/dev/null; then
            upstream_pid=
            say "the demo upstream ($PYTHON demo/upstream.py) exited before it answered on 127.0.0.1:$DEMO_PORT (its error is above)"
            port_help
            exit 1
        fi
        if grep -q '^demo upstream listening on ' "$tmp/upstream.out" 2>/dev/null && port_answers "$DEMO_PORT"; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [[ -z $ready ]]; then
        say "the demo upstream did not answer on 127.0.0.1:$DEMO_PORT within 5 s"
        port_help
        exit 1
    fi
}

# ---- banner -----------------------------------------------------------------

# The curl lines that show each timeout; $@ are the arguments of the script.
demo_banner() {
    cat <<EOF

hourglass demo
  upstream  demo/upstream.py on 127.0.0.1:$DEMO_PORT ($(basename "$PYTHON"); GET / lists its endpoints)
  proxy     $HOURGLASS_BIN ${proxy_args[*]}${*:+ $*}

Try these in another terminal (as timed with the default timeouts:
connect 1s, write 15s, read 15s, total 30s):

  curl -i $base/
      ok: 200 at once
  curl -i $base/delay/20
      read timeout: the head is 20 s away, so 504 after 15 s
  curl -i '$base/drip/100?interval=1'
      total timeout: one byte a second keeps the read timeout quiet,
      but the connection is cut mid-body after 30 s
  curl -i $base/stall-body
      read timeout mid-body: half the body, then the connection is cut after 15 s
  head -c 64M /dev/zero | curl -i -T - '$base/slow-read?stall=1'
      write timeout: the upstream stops reading the request body, so 504 after 15 s
  curl -i $base/status/503
      the upstream's own 503, passed through
  connect failure: run the proxy with --upstream 127.0.0.1:9 (nothing listens there),
      e.g. make run ARGS="--upstream 127.0.0.1:9"
      then curl -i $base/ answers 502 (upstream_refused)

Ctrl-C stops the proxy and the demo upstream.

EOF
}

if [[ -n $demo ]]; then
    start_demo_upstream
    demo_banner "$@"
else
    # The user's own upstream: no demo, so no curl lines about it either.
    list=${user_upstreams[0]}
    for u in "${user_upstreams[@]:1}"; do list+=", $u"; done
    printf 'hourglass on %s forwards to %s (your --upstream; no demo upstream started); Ctrl-C stops it\n' \
        "$base" "$list"
fi

# ---- the proxy --------------------------------------------------------------

# Run as a child, not exec'd, so that the script is still there to stop the
# demo upstream when the proxy exits. A background job of a script starts
# with SIGINT ignored: restore it, so that Ctrl-C at the terminal reaches the
# proxy directly (it is in the terminal's foreground process group with us).
( trap - INT QUIT; exec "$HOURGLASS_BIN" "${proxy_args[@]}" "$@" ) &
proxy_pid=$!

# Ctrl-C at a terminal has reached the proxy already: the script ignores it
# and waits for the proxy to finish on its own terms (and so keeps its exit
# status). Signals sent to the script alone are passed on: SIGTERM, SIGHUP
# (as SIGTERM), and SIGINT when there is no terminal (nobody pressed Ctrl-C).
# Then the script does not `wait` again (see stop_pid) but polls until the
# proxy is gone, and exits with 128 + the signal's number.
pass_on() {
    trap '' INT TERM HUP
    local pid=$proxy_pid
    proxy_pid=
    stop_pid "$pid" "$1" 100
    exit "$2"
}
if [[ -t 0 || -t 1 || -t 2 ]]; then trap '' INT; else trap 'pass_on INT 130' INT; fi
trap 'pass_on TERM 143' TERM
trap 'pass_on TERM 129' HUP

if wait "$proxy_pid"; then status=0; else status=$?; fi
proxy_pid=
if (( status != 0 )); then
    say "$(basename "$HOURGLASS_BIN") exited with status $status"
fi
exit "$status"
