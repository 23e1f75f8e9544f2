#!/usr/bin/env bash
# fuzz.sh SECONDS -- build the libFuzzer targets in fuzz/ with clang (ASan +
# UBSan) and run each for SECONDS seconds on a working copy of its seed corpus.
# Exits 1 if any target crashes, with the crash file and how to reproduce it.
# See fuzz/README.md.
set -euo pipefail

secs="${1:-20}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: $0 SECONDS   (a whole number of seconds per target, at least 1)" >&2
    exit 2
fi

cd "$(dirname "$0")/.."
out=build/fuzz
CLANG="${CLANG:-clang}"
CFLAGS_FUZZ=(-g -O1 -std=c17 -Wall -Wextra -fsanitize=fuzzer,address,undefined
             -fno-sanitize-recover=undefined -Isrc/base -Isrc/http)

# target name, description, the src/ files it links, and below its include
# folders, libraries, dictionary (default fuzz/http.dict) and options. h2
# and h2up run the whole proxy: every src/ file but main.c, and the proxy's
# libraries.
targets=(request response chunked h2 h2up)
declare -A what=([request]="request parser" [response]="response parser"
                 [chunked]="chunked decoder" [h2]="HTTP/2 server session (whole proxy)"
                 [h2up]="HTTP/2 to upstream servers (whole proxy)")
proxy_srcs=""
for f in src/*/*.c; do
    [ "$f" = src/app/main.c ] || proxy_srcs+="$f "
done
declare -A srcs=([request]="src/http/http.c src/http/fwd.c" [response]="src/http/http.c src/http/fwd.c"
                 [chunked]="src/http/http.c" [h2]="$proxy_srcs" [h2up]="$proxy_srcs")
# the include folders a target needs besides src/base and src/http
declare -A incs=([h2]="-Isrc/conf -Isrc/upstream -Isrc/proxy -Isrc/app"
                 [h2up]="-Isrc/conf -Isrc/upstream -Isrc/proxy -Isrc/app")
# the libraries a target links, after its files: one that links the proxy's
# objects links what the Makefile's LDLIBS names (libnghttp2 with them)
# (h2 and h2up count the buffers the proxy maps: fuzz_h2.c's __wrap_mmap)
proxy_libs="-lyaml -lcares -lnghttp2 -lssl -lcrypto -lm -Wl,--wrap=mmap,--wrap=munmap"
declare -A libs=([h2]="$proxy_libs" [h2up]="$proxy_libs")
declare -A dict=([h2]=fuzz/h2.dict [h2up]=fuzz/h2up.dict)
# more libFuzzer options: h2's flood seeds are 5-9 KiB (the default limit
# would follow the largest seed; this leaves the inputs room to grow);
# h2up's largest seeds carry a 70 KB body, over the proxy's 64 KiB stream
# window (its WINDOW_UPDATEs let the rest in)
declare -A runopts=([h2]="-max_len=16384" [h2up]="-max_len=81920")

# clang with the libFuzzer runtime: try linking an empty target.
clang_works() {
    command -v "$CLANG" >/dev/null 2>&1 || return 1
    local tmp
    tmp="$(mktemp -d)"
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        >"$tmp/t.c"
    local ok=0
    "$CLANG" -fsanitize=fuzzer,address,undefined -o "$tmp/t" "$tmp/t.c" >/dev/null 2>&1 || ok=1
    rm -rf "$tmp"
    return $ok
}

# the libraries fuzz_h2 links (scripts/deps.sh installs them for `make`)
libs_missing() {
    local p
    for p in libnghttp2-dev libssl-dev libc-ares-dev libyaml-dev; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

if ! clang_works || [ -n "$(libs_missing)" ]; then
    pkgs="clang libclang-rt-14-dev $(libs_missing | tr '\n' ' ')"
    cmd="apt-get install -y --no-install-recommends $pkgs"
    if [ "$(id -u)" -ne 0 ]; then
        echo "fuzzing needs clang with the libFuzzer runtime and the proxy's libraries" \
             "(Debian: $pkgs)." >&2
        echo "Install them with:  sudo $cmd" >&2
        exit 1
    fi
    echo "==> installing Debian packages: $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    if ! $cmd; then
        echo "==> install failed; refreshing the package lists and trying again"
        apt-get update -q
        $cmd
    fi
    if ! clang_works; then
        echo "clang still cannot link a libFuzzer target; is libclang-rt for this clang installed?" >&2
        exit 1
    fi
fi

mkdir -p "$out"
for t in "${targets[@]}"; do
    echo "==> building $out/fuzz_$t"
    # shellcheck disable=SC2086  # incs[], srcs[] and libs[] are lists
    "$CLANG" "${CFLAGS_FUZZ[@]}" ${incs[$t]:-} -o "$out/fuzz_$t" "fuzz/fuzz_$t.c" ${srcs[$t]} \
        ${libs[$t]:-}
done

failed=()
for t in "${targets[@]}"; do
    corpus="$out/corpus-$t"
    crashes="$out/crashes-$t"
    log="$out/fuzz_$t.log"
    mkdir -p "$corpus" "$crashes"
    cp fuzz/corpus/"$t"/* "$corpus"/   # seeds join what earlier runs found
    echo "==> fuzzing ${what[$t]} for $secs s"
    rc=0
    # shellcheck disable=SC2086  # runopts[] is a list
    "$out/fuzz_$t" -max_total_time="$secs" -dict="${dict[$t]:-fuzz/http.dict}" -print_final_stats=1 \
        -timeout=20 ${runopts[$t]:-} -artifact_prefix="$crashes/" "$corpus" >"$log" 2>&1 || rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
    last="$(grep -E '^#[0-9]+' "$log" | tail -n1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    units="$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")"
    echo "    ${execs:-?} runs, ${rate:-?} exec/s, cov ${cov:-?} edges, ft ${ft:-?}, corpus ${units:-?} (log: $log)"
    if [ "$rc" -ne 0 ]; then
        artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)"
        echo "!!! fuzz_$t FAILED (exit $rc):"
        grep -E -A1 '^INVARIANT FAILED|ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|^SUMMARY:' \
            "$log" | grep -v -E '^--$|^ *#[0-9]+ ' | head -n 8 | sed 's/^/    /' || true
        if [ -n "$artifact" ]; then
            echo "    crash file: $artifact"
            echo "    reproduce:  $out/fuzz_$t $artifact"
            echo "    as hex:     xxd $artifact"
        else
            echo "    no crash file written; see $log"
        fi
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "==> fuzzing FAILED: ${failed[*]} (crash files kept under $out/crashes-*)"
    exit 1
fi
echo "==> fuzzing passed (${#targets[@]} targets, $secs s each)"
