"""The Debian package that `make deb` built (build/deb/hourglass_VERSION_ARCH.deb,
or $HOURGLASS_DEB): its fields, files and maintainer scripts read with
dpkg-deb, then the package installed with dpkg into a throwaway root: an
overlay of / in a private mount namespace, so that dpkg, the dependency
check and the maintainer scripts run for real against this system's
packages while nothing of it reaches the real root. In it, the installed
binary checks the installed configuration with -t; a reinstall keeps an
edited conffile; remove keeps the conffiles and purge removes everything.

Run with `make deb-test` after `make deb` (.ci/run does both). The
throwaway root needs root and the right to mount (CAP_SYS_ADMIN); without
them those tests are skipped, saying so, and the dpkg-deb checks still run.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*cmd, **kw):
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=kw.pop("timeout", 120),
                          **kw)


def changelog_version():
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    m = re.match(r"^hourglass \(([^) ]+)\) ", first)
    assert m, f"debian/changelog's first line: {first!r}"
    return m.group(1)


VERSION = changelog_version()
ARCH = run("dpkg", "--print-architecture").stdout.strip()
DEB = Path(os.environ.get("HOURGLASS_DEB") or REPO / f"build/deb/hourglass_{VERSION}_{ARCH}.deb")


@pytest.fixture(scope="session")
def deb():
    if not DEB.is_file():
        pytest.fail(f"{DEB} is missing: run `make deb` first (or set HOURGLASS_DEB)")
    return DEB


def field(deb, name):
    r = run("dpkg-deb", "-f", str(deb), name)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="session")
def unpacked(deb, tmp_path_factory):
    """The package's files (dpkg-deb -x) and control files (-e)."""
    d = tmp_path_factory.mktemp("deb")
    assert run("dpkg-deb", "-x", str(deb), str(d / "root")).returncode == 0
    assert run("dpkg-deb", "-e", str(deb), str(d / "control")).returncode == 0
    return d


def test_fields(deb):
    assert field(deb, "Package") == "hourglass"
    assert field(deb, "Version") == VERSION, "the package's version is not debian/changelog's"
    assert field(deb, "Architecture") == ARCH
    for name in ("Maintainer", "Description", "Section", "Priority"):
        assert field(deb, name), f"no {name} field"


def test_version_of_the_packaged_binary(unpacked):
    r = run(str(unpacked / "root/usr/bin/hourglass"), "--version")
    assert r.returncode == 0 and r.stdout == f"hourglass {VERSION}\n", \
        f"the packaged binary says {r.stdout!r}; the package is {VERSION}"


def test_depends_cover_every_library_the_binary_needs(deb, unpacked):
    """dh_shlibdeps found them: each NEEDED library's Debian package is in
    Depends, with a version."""
    depends = {d.split()[0]: d for d in (x.strip() for x in field(deb, "Depends").split(","))}
    r = run("readelf", "-d", str(unpacked / "root/usr/bin/hourglass"))
    assert r.returncode == 0, r.stderr
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)
    assert {"libyaml-0.so.2", "libcares.so.2", "libnghttp2.so.14", "libssl.so.3",
            "libc.so.6"} <= set(needed), needed
    for lib in needed:
        q = run("dpkg", "-S", f"*/{lib}")
        assert q.returncode == 0, f"no installed package holds {lib}: {q.stderr}"
        owners = {line.split(":")[0] for line in q.stdout.splitlines()}
        hit = owners & set(depends)
        assert hit, f"{lib} (from {sorted(owners)}) is not in Depends: {sorted(depends)}"
    for name in ("libyaml-0-2", "libssl3", "libc-ares2", "libnghttp2-14", "libc6"):
        assert name in depends, f"Depends lacks {name}: {sorted(depends)}"


EXPECTED = {
    "usr/bin/hourglass": 0o755,
    "usr/share/man/man1/hourglass.1.gz": 0o644,
    "usr/share/doc/hourglass/copyright": 0o644,
    "usr/share/doc/hourglass/changelog.gz": 0o644,
    "usr/share/doc/hourglass/CHANGELOG.md.gz": 0o644,
    "usr/share/doc/hourglass/examples/hourglass.yaml": 0o644,
    "usr/share/lintian/overrides/hourglass": 0o644,
    "lib/systemd/system/hourglass.service": 0o644,
    "etc/hourglass/hourglass.yaml": 0o644,
    "etc/logrotate.d/hourglass": 0o644,
}


def test_files_and_modes(deb):
    r = run("dpkg-deb", "-c", str(deb))
    assert r.returncode == 0, r.stderr
    files = {}
    for line in r.stdout.splitlines():
        perms, owner, _size, _date, _time, path = line.split(None, 5)
        if perms.startswith("-"):
            files[path.removeprefix("./")] = (perms, owner)
    assert sorted(files) == sorted(EXPECTED), "the package holds other files than expected"
    for path, m in EXPECTED.items():
        perms, owner = files[path]
        want = "-" + "".join((c if m & (1 << (8 - i)) else "-") for i, c in enumerate("rwxrwxrwx"))
        assert perms == want, f"{path}: {perms}, expected {want}"
        assert owner == "root/root", f"{path}: owned by {owner}"


def test_contents(unpacked):
    root = unpacked / "root"
    assert (root / "etc/hourglass/hourglass.yaml").read_bytes() == \
        (REPO / "examples/hourglass.yaml").read_bytes()
    assert (root / "etc/logrotate.d/hourglass").read_bytes() == \
        (REPO / "contrib/hourglass.logrotate").read_bytes()
    unit = (root / "lib/systemd/system/hourglass.service").read_text()
    assert "\nExecStart=/usr/bin/hourglass --config /etc/hourglass/hourglass.yaml\n" in unit, \
        "the unit does not start the packaged binary on the packaged configuration"
    assert "/usr/local" not in unit
    man = run("zcat", str(root / "usr/share/man/man1/hourglass.1.gz")).stdout
    assert re.search(rf'^\.TH HOURGLASS 1 "[^"]*" "hourglass {re.escape(VERSION)}"', man, re.M)
    changelog = run("zcat", str(root / "usr/share/doc/hourglass/changelog.gz")).stdout
    assert changelog.startswith(f"hourglass ({VERSION}) "), \
        "changelog.gz is not debian/changelog (dh_installchangelogs took another file?)"
    news = run("zcat", str(root / "usr/share/doc/hourglass/CHANGELOG.md.gz")).stdout
    assert re.search(rf"^## {re.escape(VERSION)}\b", news, re.M)
    copyright_ = (root / "usr/share/doc/hourglass/copyright").read_text()
    assert copyright_.startswith("Format: https://www.debian.org/doc/packaging-manuals/"
                                 "copyright-format/1.0/")


def test_conffiles_and_maintainer_scripts(unpacked):
    conffiles = (unpacked / "control/conffiles").read_text().split()
    assert sorted(conffiles) == ["/etc/hourglass/hourglass.yaml", "/etc/logrotate.d/hourglass"]
    postinst = (unpacked / "control/postinst").read_text()
    # the policy in README.md: enabled, and started at installation
    assert "deb-systemd-helper enable 'hourglass.service'" in postinst
    assert re.search(r"deb-systemd-invoke \$_dh_action 'hourglass.service'", postinst)
    assert "deb-systemd-helper purge 'hourglass.service'" in \
        (unpacked / "control/postrm").read_text()


# --- the throwaway root -------------------------------------------------------

# Runs as root in a private mount namespace (unshare -m): a tmpfs at $T holds
# an overlay of / (upper and work on the tmpfs), /dev bound in for the
# maintainer scripts; each step's output and status go to $OUT/STEP.{out,rc}.
# When the namespace's last process exits, the mounts go with it.
CHROOT_SCRIPT = r"""
set -u
T=$1 OUT=$2 DEB=$3
mount -t tmpfs -o mode=0755 hourglass-test "$T" || exit 90
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root" || exit 91
mount --rbind /dev "$T/root/dev" || exit 92
R=$T/root
cp "$DEB" "$R/tmp/hourglass.deb"
step() { name=$1; shift; "$@" >"$OUT/$name.out" 2>&1; echo $? >"$OUT/$name.rc"; }
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
step install in_root dpkg -i /tmp/hourglass.deb
step status in_root dpkg-query -W -f '${Status} ${Version}' hourglass
step version in_root /usr/bin/hourglass --version
step check in_root /usr/bin/hourglass -t /etc/hourglass/hourglass.yaml
step enabled readlink "$R/etc/systemd/system/multi-user.target.wants/hourglass.service"
sed -i 's/127\.0\.0\.1:8080/127.0.0.1:18080/' "$R/etc/hourglass/hourglass.yaml"
echo '# edited' >>"$R/etc/hourglass/hourglass.yaml"
step reinstall in_root dpkg -i /tmp/hourglass.deb
step edited_kept tail -n 1 "$R/etc/hourglass/hourglass.yaml"
step check_edited in_root /usr/bin/hourglass -t /etc/hourglass/hourglass.yaml
step remove in_root dpkg --remove hourglass
step removed_bin test -e "$R/usr/bin/hourglass"
step removed_conf test -e "$R/etc/hourglass/hourglass.yaml"
step remove_status in_root dpkg-query -W -f '${Status}' hourglass
step purge in_root dpkg --purge hourglass
step purged_conf test -e "$R/etc/hourglass"
step purged_logrotate test -e "$R/etc/logrotate.d/hourglass"
step purged_unit test -e "$R/lib/systemd/system/hourglass.service"
step purged_link test -L "$R/etc/systemd/system/multi-user.target.wants/hourglass.service"
step purged_status in_root dpkg-query -W -f '${Status}' hourglass
exit 0
"""


@pytest.fixture(scope="session")
def throwaway_root(deb, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("installing into a throwaway root needs root (an overlay mount): "
                    "run `make deb-test` as root")
    base = tmp_path_factory.mktemp("root")
    (base / "t").mkdir()
    (base / "out").mkdir()
    r = run("unshare", "--mount", "--propagation", "private", "bash", "-c", CHROOT_SCRIPT, "sh",
            str(base / "t"), str(base / "out"), str(deb.resolve()), timeout=300)
    if r.returncode in (90, 91, 92) or (r.returncode != 0 and "unshare" in r.stderr):
        pytest.skip(f"cannot make the throwaway root (status {r.returncode}: {r.stderr.strip()}): "
                    "run as root with CAP_SYS_ADMIN (a privileged container)")
    assert r.returncode == 0, (r.stdout, r.stderr)
    steps = {}
    for f in (base / "out").glob("*.rc"):
        name = f.name[:-3]
        steps[name] = (int(f.read_text()), (base / "out" / f"{name}.out").read_text())
    return steps


def step(steps, name, rc=0):
    got, out = steps[name]
    assert got == rc, f"{name}: exit status {got}, expected {rc}:\n{out}"
    return out


def test_dpkg_installs_it(throwaway_root):
    out = step(throwaway_root, "install")
    assert f"Setting up hourglass ({VERSION})" in out, out
    assert step(throwaway_root, "status") == f"install ok installed {VERSION}"


def test_installed_binary_checks_installed_config(throwaway_root):
    assert step(throwaway_root, "check") == "/etc/hourglass/hourglass.yaml: ok\n"
    assert step(throwaway_root, "version") == f"hourglass {VERSION}\n"


def test_unit_enabled(throwaway_root):
    assert step(throwaway_root, "enabled").strip() == "/lib/systemd/system/hourglass.service"


def test_reinstall_keeps_the_edited_conffile(throwaway_root):
    step(throwaway_root, "reinstall")
    assert step(throwaway_root, "edited_kept") == "# edited\n"
    assert step(throwaway_root, "check_edited") == "/etc/hourglass/hourglass.yaml: ok\n"


def test_remove_keeps_conffiles_and_purge_removes_them(throwaway_root):
    step(throwaway_root, "remove")
    step(throwaway_root, "removed_bin", rc=1)     # the binary is gone
    step(throwaway_root, "removed_conf", rc=0)    # the configuration stays
    assert step(throwaway_root, "remove_status") == "deinstall ok config-files"
    step(throwaway_root, "purge")
    for what in ("conf", "logrotate", "unit", "link"):
        step(throwaway_root, f"purged_{what}", rc=1)
    purged = throwaway_root["purged_status"]
    assert purged[0] != 0 or purged[1].startswith("unknown ok not-installed"), purged
