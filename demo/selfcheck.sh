#!/usr/bin/env bash
# demo/selfcheck.sh -- quick check of demo/upstream.py: starts it on a free loopback port, curls a few endpoints, prints PASS or FAIL.
#
# Usage: bash demo/selfcheck.sh   (PYTHON=... picks the interpreter; exit 0 on PASS, 1 on FAIL)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
command -v curl >/dev/null 2>&1 || { echo "selfcheck: FAIL (curl is not installed)"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/upstream-selfcheck.XXXXXX")
pid=
cleanup() {
    if [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null; then
        for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf -- "$tmp"
}
trap cleanup EXIT

# Port 0: the system picks a free port and the readiness line names it.
"$PYTHON" demo/upstream.py --listen 127.0.0.1:0 --quiet --exit-with-parent >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=
for ((i = 0; i < 50; i++)); do
    port=$(sed -n 's/^demo upstream listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$tmp/out")
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $port ]]; then
    echo "selfcheck: FAIL (the upstream did not start)"
    sed 's/^/  /' "$tmp/err"
    exit 1
fi

base="http://127.0.0.1:$port"
failures=0
check() {  # name, expected, actual
    if [[ $2 == "$3" ]]; then
        printf '  ok    %-38s %s\n' "$1" "$3"
    else
        printf '  FAIL  %-38s expected %s, got %s\n' "$1" "$2" "$3"
        failures=$((failures + 1))
    fi
}
code() { curl -s -o /dev/null -m 10 -w '%{http_code}' "$@" || true; }

check "GET /" 200 "$(code "$base/")"
check "GET /status/503" 503 "$(code "$base/status/503")"
check "GET /delay/0.2" 200 "$(code "$base/delay/0.2")"
check "GET /no-such-endpoint" 404 "$(code "$base/no-such-endpoint")"
check "HEAD /bytes/1000 (no body)" "200 0" \
    "$(curl -s -I -o /dev/null -m 10 -w '%{http_code} %{size_download}' "$base/bytes/1000" || true)"
printf 'hello, chunked world' >"$tmp/body"
echo_code=$(curl -s -m 10 -o "$tmp/echoed" -w '%{http_code}' -H 'Transfer-Encoding: chunked' \
    --data-binary @"$tmp/body" "$base/echo" || true)
check "POST /echo, chunked body decoded" "200 hello, chunked world" "$echo_code $(cat "$tmp/echoed" 2>/dev/null || true)"
# num_connects: 1 for the first transfer, 0 for the second when it reuses the connection
check "keep-alive: 2 requests, 1 connection" 10 \
    "$(curl -s -o /dev/null -o /dev/null -m 10 -w '%{num_connects}' "$base/status/200" "$base/status/204" || true)"

if (( failures == 0 )); then
    echo "selfcheck: PASS"
else
    echo "selfcheck: FAIL ($failures check(s))"
    exit 1
fi
