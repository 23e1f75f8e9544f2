#!/usr/bin/env bash
# scripts/unit.sh -- what `make unit` and `make san-unit` run: every unit test
# program, each one even when one before it failed, then one line of counts.
#
# Usage: bash scripts/unit.sh COUNTS PROGRAM...
#
# Each program appends "SUITE PASSED FAILED SKIPPED" (its checks) to the file
# $UNIT_COUNTS (see tests/unit/unit.h). A program that exits non-zero although
# its line counts no failed check (e.g. a sanitizer report at exit), or that
# writes no line at all (it crashed), counts as one failed check more.
# COUNTS receives the sums, "PASSED FAILED SKIPPED", for `make test`. Exits 1
# when a program failed, naming every one that did.
set -uo pipefail

counts=$1
shift
label=$(basename "$counts")
lines=$counts.programs
mkdir -p "$(dirname "$counts")"
rm -f "$counts"
: >"$lines"

passed=0 failed=0 skipped=0 bad=()
for t in "$@"; do
    echo "--- $t"
    before=$(wc -l <"$lines")
    UNIT_COUNTS=$lines "$t"
    rc=$?
    line=$(tail -n +"$((before + 1))" "$lines" | head -n 1)
    p=0 f=0 s=0
    if [[ -n $line ]]; then
        read -r _ p f s <<<"$line"
    fi
    if [[ -z $line ]]; then
        echo "$t: exit status $rc before its summary line: counted as 1 failed check" >&2
        f=1
    elif (( rc != 0 && f == 0 )); then
        echo "$t: exit status $rc after a summary without failures: counted as 1 failed check" >&2
        f=1
    fi
    (( f == 0 )) || bad+=("$t")
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done

echo "$passed $failed $skipped" >"$counts"
if (( ${#bad[@]} )); then
    echo "$label: ${#bad[@]} of $# programs failed: ${bad[*]}"
fi
echo "$label: $passed passed, $failed failed, $skipped skipped (checks of $# programs)"
(( ${#bad[@]} == 0 ))
