"""`make install` and `make uninstall` into a staging directory (DESTDIR),
file by file; the version in one place; flags the Makefile must accept.

These run the Makefile of the source tree on the already built
build/hourglass (make install never builds), so they need no root. The
refusals (no binary, a stale binary) run on a copy of the tree, so the
checkout's own build is never touched.
"""

import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import REPO

BUILT = REPO / "build" / "hourglass"


def make(*args, cwd=REPO, timeout=120):
    """Runs make in cwd, outside any make that runs these tests (its jobserver
    and flags would leak into this one)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def changelog_version():
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    m = re.match(r"^hourglass \(([^) ]+)\) \S+; urgency=\S+$", first)
    assert m, f"debian/changelog's first line is not 'hourglass (X.Y.Z) DIST; urgency=U': {first!r}"
    return m.group(1)


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(scope="module")
def built():
    if not os.access(BUILT, os.X_OK):
        pytest.skip(f"{BUILT} is not built (run make)")
    r = make("-q", "build/hourglass")
    assert r.returncode == 0, "build/hourglass is older than its sources: run make first"
    return BUILT


def install(dest, *extra):
    r = make("install", f"DESTDIR={dest}", *extra)
    assert r.returncode == 0, f"make install failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


# What a default install (PREFIX=/usr/local) puts where, with its mode.
FILES = {
    "usr/local/bin/hourglass": 0o755,
    "usr/local/share/man/man1/hourglass.1": 0o644,
    "usr/local/share/doc/hourglass/examples/hourglass.yaml": 0o644,
    "usr/local/share/doc/hourglass/CHANGELOG.md": 0o644,
    "usr/local/lib/systemd/system/hourglass.service": 0o644,
    "etc/hourglass/hourglass.yaml": 0o644,
    "etc/logrotate.d/hourglass": 0o644,
}


def all_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def test_version_is_set_once(built):
    """debian/changelog sets it; the binary, CHANGELOG.md's newest entry and
    the man page's header follow."""
    v = changelog_version()
    out = subprocess.run([str(built), "--version"], capture_output=True, text=True, timeout=10)
    assert out.stdout == f"hourglass {v}\n", \
        f"build/hourglass --version says {out.stdout!r}, debian/changelog {v}: run make"
    headings = re.findall(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert headings and headings[0] == v, \
        f"CHANGELOG.md's newest entry is {headings[:1]}, debian/changelog's version {v}: " \
        "give the version its CHANGELOG.md entry"
    assert re.search(r"^VERSION\s*:=\s*\$\(shell sed .* debian/changelog\b", (REPO / "Makefile").read_text(),
                     re.M), "the Makefile's VERSION must be read from debian/changelog"
    src = (REPO / "src" / "conf" / "cli.c").read_text()
    assert not re.search(r'#define HG_VERSION "\d', src), \
        "src/conf/cli.c's fallback HG_VERSION is a second version: the Makefile sets it"


def test_install_puts_each_file_with_its_mode(built, tmp_path):
    dest = tmp_path / "stage"
    out = install(dest)
    assert all_files(dest) == sorted(FILES), "make install put other files than expected"
    for rel, m in FILES.items():
        p = dest / rel
        assert mode(p) == m, f"{rel}: mode {oct(mode(p))}, expected {oct(m)}"
        assert f"installed  /{rel} ({m:04o})" in out, f"make install did not say it installed /{rel}"
    assert (dest / "usr/local/bin/hourglass").read_bytes() == built.read_bytes()
    v = changelog_version()
    man = (dest / "usr/local/share/man/man1/hourglass.1").read_text()
    th = [l for l in man.splitlines() if l.startswith(".TH ")]
    assert len(th) == 1 and f'"hourglass {v}"' in th[0], th
    assert man.replace(th[0], "") == (REPO / "docs/hourglass.1").read_text().replace(
        [l for l in (REPO / "docs/hourglass.1").read_text().splitlines()
         if l.startswith(".TH ")][0], ""), "the man page differs from docs/hourglass.1 beyond .TH"
    example = (REPO / "examples/hourglass.yaml").read_bytes()
    assert (dest / "etc/hourglass/hourglass.yaml").read_bytes() == example
    assert (dest / "usr/local/share/doc/hourglass/examples/hourglass.yaml").read_bytes() == example
    assert (dest / "etc/logrotate.d/hourglass").read_bytes() == \
        (REPO / "contrib/hourglass.logrotate").read_bytes()
    unit = (dest / "usr/local/lib/systemd/system/hourglass.service").read_text()
    assert "\nExecStart=/usr/local/bin/hourglass --config /etc/hourglass/hourglass.yaml\n" in unit
    # the installed binary accepts the installed configuration
    r = subprocess.run([str(dest / "usr/local/bin/hourglass"), "-t",
                        str(dest / "etc/hourglass/hourglass.yaml")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.endswith(": ok\n"), (r.stdout, r.stderr)


def test_reinstall_keeps_an_edited_config_and_uninstall_leaves_it(built, tmp_path):
    dest = tmp_path / "stage"
    install(dest)
    conf = dest / "etc/hourglass/hourglass.yaml"
    edited = conf.read_text().replace("127.0.0.1:8080", "127.0.0.1:18080") + "# mine\n"
    conf.write_text(edited)
    out = install(dest)
    assert conf.read_text() == edited, "a second make install overwrote the edited configuration"
    assert "kept       /etc/hourglass/hourglass.yaml (yours; not overwritten" in out, out
    assert "unchanged  /etc/logrotate.d/hourglass" in out, out
    r = make("uninstall", f"DESTDIR={dest}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert all_files(dest) == ["etc/hourglass/hourglass.yaml"], \
        "make uninstall left (or removed) other files than the edited configuration"
    assert conf.read_text() == edited
    assert "kept       /etc/hourglass/hourglass.yaml (edited" in r.stdout, r.stdout
    for rel in FILES:
        if rel != "etc/hourglass/hourglass.yaml":
            assert f"removed    /{rel}\n" in r.stdout, f"make uninstall did not say it removed /{rel}"
    assert not (dest / "usr/local/share/doc/hourglass").exists()


def test_uninstall_of_an_untouched_install_removes_everything(built, tmp_path):
    dest = tmp_path / "stage"
    install(dest)
    r = make("uninstall", f"DESTDIR={dest}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert all_files(dest) == [], "make uninstall left files behind"
    assert not (dest / "etc/hourglass").exists()


def test_directories_follow_the_variables(built, tmp_path):
    dest = tmp_path / "stage"
    install(dest, "PREFIX=/opt/hg", "SYSCONFDIR=/opt/hg/etc", "MANDIR=/opt/man")
    files = all_files(dest)
    assert files == sorted(["opt/hg/bin/hourglass", "opt/man/man1/hourglass.1",
                            "opt/hg/share/doc/hourglass/examples/hourglass.yaml",
                            "opt/hg/share/doc/hourglass/CHANGELOG.md",
                            "opt/hg/lib/systemd/system/hourglass.service",
                            "opt/hg/etc/hourglass/hourglass.yaml",
                            "opt/hg/etc/logrotate.d/hourglass"]), files
    unit = (dest / "opt/hg/lib/systemd/system/hourglass.service").read_text()
    assert "\nExecStart=/opt/hg/bin/hourglass --config /opt/hg/etc/hourglass/hourglass.yaml\n" in unit
    assert "/usr/local/bin" not in unit and "/etc/hourglass/" not in unit.replace(
        "/opt/hg/etc/hourglass/", ""), "the unit still names the default paths"
    r = make("uninstall", f"DESTDIR={dest}", "PREFIX=/opt/hg", "SYSCONFDIR=/opt/hg/etc",
             "MANDIR=/opt/man")
    assert r.returncode == 0 and all_files(dest) == [], (r.stdout, all_files(dest))


@pytest.fixture
def tree_copy(built, tmp_path):
    """A copy of what the build reads, with build/ as it is (times kept)."""
    copy = tmp_path / "tree"
    copy.mkdir()
    for name in ("Makefile", "CHANGELOG.md", "debian", "src", "docs", "contrib", "examples",
                 "scripts"):
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, copy / name, symlinks=True)
        else:
            shutil.copy2(p, copy / name)
    shutil.copytree(REPO / "build" / "obj", copy / "build" / "obj")
    shutil.copy2(BUILT, copy / "build" / "hourglass")
    r = make("-q", "build/hourglass", cwd=copy)
    assert r.returncode == 0, "the copy of the tree is not up to date: " + r.stdout + r.stderr
    return copy


def test_install_refuses_a_missing_binary(tree_copy, tmp_path):
    shutil.rmtree(tree_copy / "build")
    r = make("install", f"DESTDIR={tmp_path / 'stage'}", cwd=tree_copy)
    assert r.returncode != 0
    assert "build/hourglass is not built: run `make` first (as your user, not root)" in r.stderr
    assert not (tree_copy / "build").exists(), "make install built something"
    assert not (tmp_path / "stage").exists(), "make install installed something"


@pytest.mark.parametrize("newer", ["src/proxy/client.c", "src/base/loop.h", "debian/changelog"])
def test_install_refuses_a_stale_binary_without_building(tree_copy, tmp_path, newer):
    """As root after a source changed, make install must not compile: it says
    to run make as the user."""
    before = {p: p.stat().st_mtime_ns for p in (tree_copy / "build").rglob("*")}
    t = (tree_copy / "build" / "hourglass").stat().st_mtime + 10
    os.utime(tree_copy / newer, (t, t))
    r = make("install", f"DESTDIR={tmp_path / 'stage'}", cwd=tree_copy)
    assert r.returncode != 0, r.stdout
    assert "build/hourglass is older than its sources" in r.stderr, r.stderr
    assert "run `make` again (as your user, not root)" in r.stderr, r.stderr
    after = {p: p.stat().st_mtime_ns for p in (tree_copy / "build").rglob("*")}
    assert after == before, "make install rebuilt something"
    assert not (tmp_path / "stage").exists(), "make install installed something"


def test_extra_flags_come_before_the_required_ones():
    """dpkg-buildflags' CFLAGS, CPPFLAGS and LDFLAGS (the Debian package's
    hardening) reach every compile and link, and a CFLAGS given on the command
    line does not drop -Werror, -std=c17 or the version."""
    r = make("-n", "-B", "build/obj/conf/cli.o", "build/hourglass", "CFLAGS=-O1 -fstack-protector-strong",
             "CPPFLAGS=-D_FORTIFY_SOURCE=2", "LDFLAGS=-Wl,-z,relro -Wl,-z,now")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    cc = [l for l in lines if " -c -o build/obj/conf/cli.o " in l]
    assert len(cc) == 1, r.stdout
    for flag in ("-D_FORTIFY_SOURCE=2", "-O1 -fstack-protector-strong", "-std=c17", "-Werror",
                 f"-DHG_VERSION='\"{changelog_version()}\"'"):
        assert flag in cc[0], f"{flag} missing from: {cc[0]}"
    link = [l for l in lines if " -o build/hourglass " in l]
    assert len(link) == 1 and "-Wl,-z,relro -Wl,-z,now" in link[0], r.stdout
