"""The counts `make test` ends with: scripts/unit.sh (make unit, make san-unit)
and scripts/test-counts.py (the closing "total: N passed, N failed, N
skipped" line), on made-up programs and real pytest reports."""

import re
import subprocess
import sys

from conftest import REPO

UNIT_SH = str(REPO / "scripts" / "unit.sh")
COUNTS_PY = str(REPO / "scripts" / "test-counts.py")
TOTAL = re.compile(r"^total: (\d+) passed, (\d+) failed, (\d+) skipped$")


def program(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def total(out):
    """(passed, failed, skipped) of the last line, which must be the total."""
    last = out.rstrip("\n").splitlines()[-1]
    m = TOTAL.match(last)
    assert m, f"last line is not the total: {last!r}"
    return tuple(int(x) for x in m.groups())


def test_unit_sh_runs_every_program_and_sums(tmp_path):
    ok = program(tmp_path / "t_ok", 'echo "t_ok 10 0 1" >>"$UNIT_COUNTS"\n')
    bad = program(tmp_path / "t_bad", 'echo "t_bad 7 2 0" >>"$UNIT_COUNTS"; exit 1\n')
    crash = program(tmp_path / "t_crash", "kill -SEGV $$\n")
    leak = program(tmp_path / "t_leak", 'echo "t_leak 3 0 0" >>"$UNIT_COUNTS"; exit 23\n')
    last = program(tmp_path / "t_last", 'echo "t_last 5 0 0" >>"$UNIT_COUNTS"\n')
    counts = tmp_path / "c" / "unit"
    r = subprocess.run(["bash", UNIT_SH, str(counts), ok, bad, crash, leak, last],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.stdout, r.stderr)
    for t in (ok, bad, crash, leak, last):
        assert f"--- {t}\n" in r.stdout, f"{t} did not run"
    assert f"3 of 5 programs failed: {bad} {crash} {leak}\n" in r.stdout, r.stdout
    # 2 failed checks, 1 for the crash, 1 for the non-zero exit after a clean line
    assert counts.read_text() == "25 4 1\n"
    assert r.stdout.rstrip().splitlines()[-1] == "unit: 25 passed, 4 failed, 1 skipped " \
        "(checks of 5 programs)"


def test_unit_sh_all_pass(tmp_path):
    ok = program(tmp_path / "t_ok", 'echo "t_ok 10 0 1" >>"$UNIT_COUNTS"\n')
    counts = tmp_path / "unit"
    r = subprocess.run(["bash", UNIT_SH, str(counts), ok, ok], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert counts.read_text() == "20 0 2\n"


def pytest_report(tmp_path, name, source):
    """Runs pytest on a test file with source; returns its exit status and
    leaves its JUnit XML report at tmp_path/counts/NAME.xml."""
    d = tmp_path / name
    d.mkdir()
    (d / "test_x.py").write_text(source)
    (tmp_path / "counts").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={tmp_path / 'counts' / (name + '.xml')}", str(d)],
                          cwd=d, capture_output=True, text=True, timeout=60).returncode


def counts(d, *stages):
    return subprocess.run([sys.executable, COUNTS_PY, str(d), *stages], capture_output=True,
                          text=True, timeout=30)


def status(d, stage, rc):
    (d / f"{stage}.status").write_text(f"{rc}\n")


def test_counts_sum_every_stage(tmp_path):
    d = tmp_path / "counts"
    rc = pytest_report(tmp_path, "integration",
                       "import pytest\n"
                       "def test_a(): pass\n"
                       "def test_b(): pass\n"
                       "def test_c(): pytest.skip('no')\n")
    assert rc == 0
    status(d, "integration", 0)
    rc = pytest_report(tmp_path, "san-integration",
                       "def test_a(): pass\n"
                       "def test_b(): assert 0\n")
    assert rc == 1
    status(d, "san-integration", 2)   # the sub-make's status
    (d / "unit").write_text("100 0 1\n")
    status(d, "unit", 0)
    (d / "san-unit").write_text("90 3 1\n")
    status(d, "san-unit", 2)
    status(d, "build", 0)
    r = counts(d, "build", "unit", "integration", "san-unit", "san-integration")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert total(r.stdout) == (100 + 2 + 90 + 1, 0 + 0 + 3 + 1, 1 + 1 + 1 + 0), r.stdout

    for f in ("san-unit", "san-integration"):
        status(d, f, 0)
    (d / "san-unit").write_text("90 0 1\n")
    pytest_report(tmp_path, "san-integration2", "def test_a(): pass\n")
    (d / "san-integration2.xml").replace(d / "san-integration.xml")
    r = counts(d, "build", "unit", "integration", "san-unit", "san-integration")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert total(r.stdout) == (193, 0, 3), r.stdout


def test_counts_no_tests_collected_is_a_failure(tmp_path):
    """pytest exit 5 (no tests) never reads as a success."""
    d = tmp_path / "counts"
    rc = pytest_report(tmp_path, "integration", "# no tests here\n")
    assert rc == 5
    status(d, "integration", 2)
    r = counts(d, "integration")
    assert r.returncode == 1, r.stdout
    assert total(r.stdout) == (0, 1, 0), r.stdout
    assert "pytest collected no tests" in r.stdout
    # even if the exit status were lost: a report without a test is no success
    status(d, "integration", 0)
    r = counts(d, "integration")
    assert r.returncode == 1 and total(r.stdout) == (0, 1, 0), r.stdout


def test_counts_missing_report_or_failed_build(tmp_path):
    d = tmp_path / "counts"
    d.mkdir()
    status(d, "unit", 0)                # ran, but left no counts
    r = counts(d, "unit")
    assert r.returncode == 1 and total(r.stdout) == (0, 1, 0), r.stdout
    status(d, "integration", 2)         # pytest stopped before writing a report
    r = counts(d, "integration")
    assert r.returncode == 1 and total(r.stdout) == (0, 1, 0), r.stdout
    assert "stopped before its report" in r.stdout
    for f in d.iterdir():
        f.unlink()
    status(d, "build", 2)               # nothing else ran
    r = counts(d, "build", "unit", "integration", "san-unit", "san-integration")
    assert r.returncode == 1 and total(r.stdout) == (0, 1, 0), r.stdout
    assert "the build failed" in r.stdout and "did not run" in r.stdout
