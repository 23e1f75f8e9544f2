#!/usr/bin/env python3
"""scripts/test-counts.py -- the closing lines of `make test`: the counts of
each stage, then their sum alone on the last line:

    total: 4321 passed, 0 failed, 12 skipped

Usage: test-counts.py DIR STAGE...

For each STAGE, DIR holds what `make test` and the stage left there:
  STAGE.status  the stage's exit status (no file: the stage did not run)
  STAGE.xml     pytest's JUnit XML report (--junitxml), or
  STAGE         "PASSED FAILED SKIPPED" (scripts/unit.sh: unit checks)
The build has no report: its exit status alone counts. A stage that failed
without a failed test in its report (pytest found no tests, was interrupted
or crashed; a build error), or that left no report, counts as one failed
test, with a line that says why: the counts never read as a success when the
run was not one.
Exits 1 when anything failed, else 0. Python standard library only.
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# stage: (label, what reports its counts)
STAGES = {
    "build": ("build", None),
    "unit": ("unit tests (checks)", "unit"),
    "integration": ("integration tests", "pytest"),
    "san-unit": ("unit tests under ASan+UBSan (checks)", "unit"),
    "san-integration": ("integration tests under ASan+UBSan", "pytest"),
}

def junit_counts(path):
    """(passed, failed, skipped) from a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    passed = failed = skipped = 0
    for s in suites:
        tests = int(s.get("tests", 0))
        bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
        skip = int(s.get("skipped", 0))
        passed += max(tests - bad - skip, 0)
        failed += bad
        skipped += skip
    return passed, failed, skipped


def stage_counts(d, stage):
    """(passed, failed, skipped, notes) of one stage, or None if it did not run."""
    kind = STAGES[stage][1]
    status_file = d / f"{stage}.status"
    if not status_file.exists():
        return None
    try:
        status = int(status_file.read_text().strip())
    except ValueError:
        status = -1
    notes = []
    passed = failed = skipped = 0
    report = {"pytest": d / f"{stage}.xml", "unit": d / stage}.get(kind)
    have_report = False
    if report is not None:
        try:
            if kind == "pytest":
                passed, failed, skipped = junit_counts(report)
            else:
                passed, failed, skipped = (int(x) for x in report.read_text().split())
            have_report = True
        except FileNotFoundError:
            pass
        except (ET.ParseError, ValueError, OSError) as e:
            notes.append(f"unreadable report {report}: {e}")
    if status != 0 and failed == 0:
        if kind is None:
            why = "the build failed"
        elif not have_report:
            why = "stopped before its report: interrupted, crashed or called wrongly"
        elif passed + skipped == 0:
            why = "no test ran" if kind == "unit" else "pytest collected no tests"
        else:
            why = "no failed test in its report"
        notes.append(f"exit status {status} ({why}): counted as 1 failed")
        failed = 1
    elif status == 0 and report is not None and not have_report:
        notes.append("exit status 0 without a report: counted as 1 failed")
        failed = 1
    elif status == 0 and have_report and passed + failed + skipped == 0:
        notes.append("no test ran: counted as 1 failed")
        failed = 1
    return passed, failed, skipped, notes


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    d = Path(argv[1])
    total = [0, 0, 0]
    lines = []
    unknown = [s for s in argv[2:] if s not in STAGES]
    if unknown:
        sys.stderr.write(f"test-counts.py: unknown stage(s) {' '.join(unknown)}; "
                         f"known: {' '.join(STAGES)}\n")
        return 2
    for stage in argv[2:]:
        label = STAGES[stage][0]
        c = stage_counts(d, stage)
        if c is None:
            lines.append(f"  {label}: did not run")
            continue
        passed, failed, skipped, notes = c
        total[0] += passed
        total[1] += failed
        total[2] += skipped
        if stage == "build" and not notes:
            continue
        lines.append(f"  {label}: {passed} passed, {failed} failed, {skipped} skipped")
        lines.extend(f"    {n}" for n in notes)
    print("==> results")
    for line in lines:
        print(line)
    print(f"total: {total[0]} passed, {total[1]} failed, {total[2]} skipped", flush=True)
    return 1 if total[1] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
