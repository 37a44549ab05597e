#!/usr/bin/env python3
"""Runs the end-to-end tests: every tests/e2e/test_*.py, with unittest.

    python3 tests/e2e/run.py [-k SUBSTRING]... [-q]

Prints one line per test (ok / FAIL / ERROR / skipped),
the tracebacks of the failures, and as its last line

    E2E: N passed, N failed

which test.sh adds to its totals. Skipped tests are counted on the line before
it. Exit status 0 only when nothing failed. A test that runs longer than
PBX_E2E_TEST_TIMEOUT seconds (default 300) fails with a timeout error.
Needs root and a build (PBX_BUILD_DIR, default build-test).
"""

import argparse
import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test exceeded PBX_E2E_TEST_TIMEOUT")


class Result(unittest.TextTestResult):
    """Arms a watchdog around each test."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.timeout = int(os.environ.get("PBX_E2E_TEST_TIMEOUT", "300"))

    def startTest(self, test):
        signal.alarm(self.timeout)
        super().startTest(test)

    def stopTest(self, test):
        signal.alarm(0)
        super().stopTest(test)


class Runner(unittest.TextTestRunner):
    resultclass = Result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", action="append", default=[],
                    help="run only tests whose name contains this (repeatable)")
    ap.add_argument("-q", action="store_true", help="quieter: one character per test")
    opts = ap.parse_args()

    if os.geteuid() != 0:
        print("run.py: the end-to-end tests need root", file=sys.stderr)
        print("E2E: 0 passed, 1 failed")
        return 1
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if opts.k:
        loader.testNamePatterns = ["*%s*" % k for k in opts.k]
    try:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    except Exception as e:  # noqa: BLE001 - a broken discovery is one failure
        print("run.py: discovering tests failed: %r" % e)
        print("E2E: 0 passed, 1 failed")
        return 1
    # loader.errors: modules that failed to import (they also appear as
    # _FailedTest cases, which the run counts as errors).
    failed_imports = len(getattr(loader, "errors", []))

    t0 = time.monotonic()
    result = Runner(stream=sys.stdout, verbosity=1 if opts.q else 2).run(suite)
    # Count tests, not failure records: a test with three failing subtests is
    # one failed test.
    # Errors in class or module fixtures (setUpClass, tearDownModule) are not
    # tests of their own: they add a failure but take no pass away.
    records = [t for t, _ in result.failures + result.errors]
    fixtures = [t for t in records if isinstance(t, unittest.suite._ErrorHolder)]
    failed_ids = {id(getattr(t, "test_case", t)) for t in records if t not in fixtures}
    failed_ids |= {id(t) for t in result.unexpectedSuccesses}
    skipped = len(result.skipped)
    passed = max(0, result.testsRun - skipped - len(failed_ids))
    failed = len(failed_ids) + len(fixtures)
    print("E2E: %d tests run in %.1fs, %d skipped%s"
          % (result.testsRun, time.monotonic() - t0, skipped,
             "" if not failed_imports else ", %d modules failed to import" % failed_imports))
    print("E2E: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
