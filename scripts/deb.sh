#!/usr/bin/env bash
# deb.sh VERSION -- `make deb`: build the Debian package with the standard
# tools and check it with lintian. Run from the top of the source tree.
#
#   1. the tools (dpkg-dev, debhelper, lintian) and the Build-Depends of
#      debian/control: installed with apt-get when run as root, otherwise
#      the command to run is printed;
#   2. a copy of the tree (git's tracked and untracked files, not build/) in
#      build/deb/hourglass-VERSION/, so that dpkg-buildpackage's outputs
#      land in build/deb/ and the source tree stays clean;
#   3. dpkg-buildpackage -us -uc -b in the copy (log: build/deb/build.log);
#   4. lintian on the result: an error or a warning fails (each accepted
#      warning is an override in debian/hourglass.lintian-overrides, with
#      its reason).
set -euo pipefail

version=${1:?usage: deb.sh VERSION}
out=build/deb
src=$out/hourglass-$version
log=$out/build.log

# --- 1. tools ---------------------------------------------------------------
bash scripts/deps.sh "make deb" dpkg-dev debhelper lintian gcc make libc6-dev libyaml-dev \
    libc-ares-dev libssl-dev libnghttp2-dev

# --- 2. the copy --------------------------------------------------------------
echo "==> [deb 1/3] copying the source tree to $src"
rm -rf "$out"
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked and untracked files, without what .gitignore names (build/)
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
        tar --null -cf - -T - | tar -xf - -C "$src"
else
    tar --exclude=./build --exclude=./.git -cf - . | tar -xf - -C "$src"
fi

# --- 3. dpkg-buildpackage -------------------------------------------------------
jobs=$(nproc)
echo "==> [deb 2/3] dpkg-buildpackage -us -uc -b (make, make unit, make install; log: $log)"
if ! (cd "$src" && DEB_BUILD_OPTIONS="parallel=$jobs ${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
    tail -n 40 "$log" | sed 's/^/  | /'
    echo "make deb: dpkg-buildpackage failed (the end of $log is above). A missing build" >&2
    echo "dependency is named by dpkg-checkbuilddeps: install it with apt-get; a compiler" >&2
    echo "error also shows in a plain \`make\`; a unit test failure in \`make unit\`." >&2
    exit 1
fi
deb=$out/hourglass_${version}_$(dpkg-architecture -qDEB_HOST_ARCH).deb
changes=$out/hourglass_${version}_$(dpkg-architecture -qDEB_HOST_ARCH).changes
if [ ! -f "$deb" ]; then
    echo "make deb: dpkg-buildpackage succeeded but $deb is not there: is debian/changelog's" >&2
    echo "first line \"hourglass ($version) ...\"? (ls $out)" >&2
    exit 1
fi
grep -E '^ +(dh_|debian/rules )|^dpkg-buildpackage: info: binary-only' "$log" | sed 's/^ */  /' | head -n 60 || true

# --- 4. lintian ---------------------------------------------------------------------
echo "==> [deb 3/3] lintian $changes"
if ! lintian --fail-on error,warning --display-info "$changes" >"$out/lintian.log" 2>&1; then
    sed 's/^/  | /' "$out/lintian.log"
    echo "make deb: lintian found errors or warnings (above, also in $out/lintian.log)." >&2
    echo "Fix them in debian/ (\`lintian-explain-tags TAG\` says what a tag means), or, for a" >&2
    echo "warning that is right for hourglass, add it to debian/hourglass.lintian-overrides" >&2
    echo "with a comment saying why and explain it in README.md (\"Debian package\")." >&2
    exit 1
fi
sed 's/^/  | /' "$out/lintian.log"
echo "==> built $deb ($(du -k "$deb" | cut -f1) KiB); lintian: no errors, no warnings"
echo "    install it with: apt-get install ./$deb"
