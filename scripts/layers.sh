#!/usr/bin/env bash
# layers.sh LAYER... -- checks that the include arrows of src/ point down.
#
# src/ holds one folder per layer, named lowest first on the command line
# (the Makefile's LAYERS). A file may include a header of its own layer or of
# a layer below it, never one above: the event loop knows nothing of the
# proxy, the proxy nothing of the master. Each arrow that points up is
# printed as FILE:LINE: includes NAME (LAYER, above LAYER); exit 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -gt 0 ] || { echo "usage: $0 LAYER... (lowest first)" >&2; exit 2; }
declare -A rank=() home=()
i=0
for l in "$@"; do
    rank[$l]=$i
    i=$((i + 1))
    for h in src/"$l"/*.h; do
        [ -e "$h" ] && home[$(basename "$h")]=$l
    done
done

bad=0
for l in "$@"; do
    for f in src/"$l"/*.[ch]; do
        [ -e "$f" ] || continue
        while IFS=: read -r line name; do
            dep=${home[$name]:-}
            if [ -z "$dep" ]; then
                echo "$f:$line: includes \"$name\", which is in no layer of src/" >&2
                bad=1
            elif [ "${rank[$dep]}" -gt "${rank[$l]}" ]; then
                echo "$f:$line: includes \"$name\" ($dep, above $l): move the shared part down" >&2
                bad=1
            fi
        done < <(grep -n '^#include "' "$f" | sed -E 's/^([0-9]+):#include "([^"]+)".*/\1:\2/')
    done
done
if [ $bad -ne 0 ]; then
    echo "layers: include arrows must point down ($*, lowest first)" >&2
    exit 1
fi
echo "layers: every include points down ($*)"
