#!/usr/bin/env bash
# deps.sh -- make sure the Debian packages that build and test hourglass are
# installed; install them with apt-get when running as root, otherwise print
# the exact command to run.
set -euo pipefail

# build: the compiler and the libraries' headers (libnghttp2-dev: the HTTP/2
# codec); tests: curl (--http2 too), nghttp and h2load (nghttp2-client),
# python3-h2 for hand-made HTTP/2 frames (and the scripted HTTP/2 upstream),
# python3-grpcio for real gRPC clients and servers. The bench's own tools (nginx,
# HAProxy, wrk; h2o with the HTTP/2 scenario) are bench/run.sh's business.
# With arguments (`deps.sh WHAT PKG...`), those packages instead, for WHAT
# (e.g. "make deb"): one place installs or names what is missing.
what=hourglass
need=(gcc make libc6-dev libyaml-dev libc-ares-dev libssl-dev libnghttp2-dev openssl python3
      python3-pytest python3-h2 python3-grpcio curl nghttp2-client apache2-utils)
if [ $# -gt 0 ]; then
    what=$1
    shift
    need=("$@")
fi
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "$what needs these Debian packages: ${missing[*]}" >&2
    echo "Install them with:  sudo $cmd" >&2
    exit 1
fi
echo "==> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! $cmd; then
    echo "==> install failed; refreshing the package lists and trying again"
    apt-get update -q
    $cmd
fi
