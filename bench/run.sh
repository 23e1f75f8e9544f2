#!/usr/bin/env bash
# make bench [BENCH_ARGS="--quick"] -- hourglass vs nginx vs HAProxy vs h2o vs a byte-relay floor.
# bash bench/run.sh --help: every option. A/B of two hourglass binaries in one run:
#   HOURGLASS_BIN=NEW bash bench/run.sh --baseline OLD --proxies hourglass,hg-base ...
# Checks/installs the tools, builds the floor and the HTTP/2 upstream, raises the open-file limit and
# runs bench/bench.py; every process it starts is killed on exit or Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

need=()
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx-light)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)   # h2load, for the HTTP/2 rows
[ -x /usr/bin/h2o ] || command -v h2o >/dev/null || need+=(h2o)   # the third peer (every row but the HTTP/2-upstream ones and hedge-tail)
command -v ab >/dev/null || need+=(apache2-utils)   # ab, for small-ab-k
command -v gcc >/dev/null || need+=(gcc)
command -v openssl >/dev/null || need+=(openssl)   # certificate for the TLS scenarios
command -v taskset >/dev/null || need+=(util-linux)
[ -x /usr/bin/python3 ] || need+=(python3)
# grpc-unary and h2-upstream-small: bench/grpc_upstream.c links libnghttp2;
# python3-grpcio is the real gRPC client that checks each proxy before grpc-unary
[ -f /usr/include/nghttp2/nghttp2.h ] || need+=(libnghttp2-dev)
/usr/bin/python3 -c 'import grpc' 2>/dev/null || need+=(python3-grpcio)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bench: installing ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    else
        echo "bench: missing tools; run:" >&2
        echo "    sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
fi
export PATH="/usr/sbin:/sbin:$PATH"

BENCH_TMP=$(mktemp -d /tmp/hgbench.XXXXXX)
export BENCH_TMP
: >"$BENCH_TMP/pids"
py_pid=
cleanup() {
    trap - EXIT INT TERM
    [ -n "$py_pid" ] && kill -TERM "$py_pid" 2>/dev/null && wait "$py_pid" 2>/dev/null || true
    # anything bench.py started and did not reap (it records every pid)
    while read -r pid; do
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    done <"$BENCH_TMP/pids"
    [ -f "$BENCH_TMP/cleanup" ] && xargs -r rm -rf <"$BENCH_TMP/cleanup"
    rm -rf "$BENCH_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gcc -O2 -Wall -Wextra -o "$BENCH_TMP/floor" "$here/floor.c"
# the HTTP/2 upstream of grpc-unary and h2-upstream-small
gcc -O2 -Wall -Wextra -o "$BENCH_TMP/grpc_upstream" "$here/grpc_upstream.c" -lnghttp2
# hedge-tail: the two-server upstream with a slow tail, and the open-loop client
gcc -O2 -Wall -Wextra -o "$BENCH_TMP/hedge_upstream" "$here/hedge_upstream.c"
gcc -O2 -Wall -Wextra -o "$BENCH_TMP/hedge_load" "$here/hedge_load.c"
# Enough descriptors for 10,000 client connections plus their upstream ones:
# as high as the hard limit allows (bench.py lowers the connection count if
# the hard limit is too low and says so).
ulimit -n "$(ulimit -Hn)"

cd "$root"
/usr/bin/python3 "$here/bench.py" "$@" &
py_pid=$!
wait "$py_pid"
status=$?
py_pid=
exit $status
