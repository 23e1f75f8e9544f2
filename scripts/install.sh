#!/usr/bin/env bash
# install.sh install|uninstall -- what `make install` and `make uninstall` do
# (the Makefile checks first that build/hourglass is built and up to date,
# and passes the directories below in the environment). Run from the top of
# the source tree. Each file is printed as it is installed or removed.
#
#   DESTDIR          staging root put in front of every path (default: none)
#   BINDIR           the binary                 (make: $(PREFIX)/bin)
#   MANDIR           man1/hourglass.1           (make: $(PREFIX)/share/man)
#   DOCDIR           the example configuration  (make: $(PREFIX)/share/doc/hourglass)
#   SYSCONFDIR       hourglass/hourglass.yaml and logrotate.d/hourglass (make: /etc)
#   SYSTEMDUNITDIR   hourglass.service          (make: $(PREFIX)/lib/systemd/system)
#   VERSION          written into the manual page's header
#
# The two files under SYSCONFDIR belong to the administrator once installed:
# `install` never overwrites them, and `uninstall` removes them only when
# they are still as shipped. The unit's ExecStart= and the paths it names
# follow BINDIR and SYSCONFDIR.
set -euo pipefail

action=${1:-}
for v in BINDIR MANDIR DOCDIR SYSCONFDIR SYSTEMDUNITDIR VERSION; do
    if [ -z "${!v:-}" ]; then
        echo "install.sh: $v is not set; run it through \`make install\` or \`make uninstall\`" >&2
        exit 2
    fi
done
D=${DESTDIR:-}
if [ -n "$D" ]; then
    D=${D%/}
fi

bin=$BINDIR/hourglass
man=$MANDIR/man1/hourglass.1
example=$DOCDIR/examples/hourglass.yaml
changelog=$DOCDIR/CHANGELOG.md
conf=$SYSCONFDIR/hourglass/hourglass.yaml
logrotate=$SYSCONFDIR/logrotate.d/hourglass
unit=$SYSTEMDUNITDIR/hourglass.service

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The files as installed: the unit with this installation's paths, the manual
# page with this version in its header; the others as they are in the tree.
sed -e "s|/usr/local/bin/hourglass|$bin|g" \
    -e "s|/etc/hourglass/|$SYSCONFDIR/hourglass/|g" contrib/hourglass.service >"$tmp/hourglass.service"
sed -e "/^\.TH /s/\"hourglass [^\"]*\"/\"hourglass $VERSION\"/" docs/hourglass.1 >"$tmp/hourglass.1"
cp examples/hourglass.yaml "$tmp/hourglass.yaml"
cp contrib/hourglass.logrotate "$tmp/hourglass.logrotate"

say() { printf '  %-10s %s\n' "$1" "$2"; }

# mkdir_for PATH: PATH's directory, made (0755) if missing; an existing one
# keeps its mode.
mkdir_for() {
    local d
    d=$(dirname "$D$1")
    [ -d "$d" ] || install -d -m 0755 "$d"
}

# put MODE SOURCE PATH: install (or replace) a file the package owns.
put() {
    mkdir_for "$3"
    install -m "$1" "$2" "$D$3"
    say installed "$3 ($1)"
}

# put_conf MODE SOURCE PATH: the administrator's file: installed only if absent.
put_conf() {
    if [ -e "$D$3" ] || [ -L "$D$3" ]; then
        if cmp -s "$2" "$D$3"; then
            say unchanged "$3 (already the shipped one)"
        else
            say kept "$3 (yours; not overwritten: compare it with $4)"
        fi
        return
    fi
    mkdir_for "$3"
    install -m "$1" "$2" "$D$3"
    say installed "$3 ($1)"
}

# rm_file PATH: remove a file the package owns.
rm_file() {
    if [ -e "$D$1" ] || [ -L "$D$1" ]; then
        rm -f "$D$1"
        say removed "$1"
    fi
}

# rm_conf SHIPPED PATH: remove the administrator's file only if unedited.
rm_conf() {
    if [ -e "$D$2" ] || [ -L "$D$2" ]; then
        if cmp -s "$1" "$D$2"; then
            rm -f "$D$2"
            say removed "$2"
        else
            say kept "$2 (edited: remove it yourself if you no longer want it)"
        fi
    fi
}

# rm_dir PATH: remove a directory of ours if it is empty.
rm_dir() {
    if [ -d "$D$1" ] && rmdir "$D$1" 2>/dev/null; then
        say removed "$1/"
    fi
}

where=${D:-/}
case "$action" in
install)
    echo "==> installing hourglass $VERSION into $where"
    put 0755 build/hourglass "$bin"
    put 0644 "$tmp/hourglass.1" "$man"
    put 0644 "$tmp/hourglass.yaml" "$example"
    put 0644 CHANGELOG.md "$changelog"
    put 0644 "$tmp/hourglass.service" "$unit"
    put_conf 0644 "$tmp/hourglass.yaml" "$conf" "$example"
    put_conf 0644 "$tmp/hourglass.logrotate" "$logrotate" "contrib/hourglass.logrotate"
    if [ -z "$D" ]; then
        cat <<EOF
==> done. Next, as root:
  \$EDITOR $conf             # listen addresses, pools, routes
  $bin -t $conf
  systemctl daemon-reload && systemctl enable --now hourglass.service
EOF
    else
        echo "==> done (staged under $D)"
    fi
    ;;
uninstall)
    echo "==> removing hourglass from $where"
    if [ -z "$D" ] && command -v systemctl >/dev/null 2>&1 &&
        systemctl is-active --quiet hourglass.service 2>/dev/null; then
        echo "  note: hourglass.service is running; stop it with: systemctl disable --now hourglass.service"
    fi
    rm_file "$bin"
    rm_file "$man"
    rm_file "$example"
    rm_file "$changelog"
    rm_file "$unit"
    rm_conf "$tmp/hourglass.yaml" "$conf"
    rm_conf "$tmp/hourglass.logrotate" "$logrotate"
    rm_dir "$DOCDIR/examples"
    rm_dir "$DOCDIR"
    rm_dir "$SYSCONFDIR/hourglass"
    echo "==> done"
    ;;
*)
    echo "usage: install.sh install|uninstall (run through \`make install\` or \`make uninstall\`)" >&2
    exit 2
    ;;
esac
