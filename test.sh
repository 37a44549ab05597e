#!/usr/bin/env bash
# test.sh: build Pillarbox with the sanitizers and run every test.
# Run as root on Debian 12, from anywhere:   ./test.sh
#
#   1. installs the missing packages (packaging/install-deps.sh);
#   2. builds into build-test/ with -Db_sanitize=address,undefined
#      -Dwerror=true (a target that fails to build counts as one failure; the
#      rest still builds and runs);
#   3. creates the system users (packaging/create-users.sh);
#   4. runs every test registered with meson (the Catch2 unit tests), counting
#      their test cases; a crash, a sanitizer report or a timeout counts as a
#      failure;
#   5. runs the end-to-end tests (tests/e2e/run.py), counting tests.
# The last line of output is always "N passed, N failed"; the exit status is
# 0 only when nothing failed. Logs of each run are in build-test/test-logs/.
#
# Environment: PBX_TEST_BUILD_DIR (default build-test), PBX_JOBS (parallel
# compile jobs, default: the number of CPUs), PBX_SKIP_E2E=1, PBX_SKIP_UNIT=1.
set -uo pipefail

# Everything is inside main(), which bash parses whole before running it: a
# checkout that changes this file while it runs cannot derail it.
main() {
    SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
    cd "$SRC" || exit 1

    BUILD=${PBX_TEST_BUILD_DIR:-build-test}
    case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
    JOBS=${PBX_JOBS:-$(nproc)}
    LOGS=$BUILD/test-logs

    # A sanitizer report must fail the program that hit it, and show where.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

    PASSED=0
    FAILED=0
    PROBLEMS=()

    section() { printf '\n=== %s\n' "$*"; }
    problem() {
        PROBLEMS+=("$1")
        FAILED=$((FAILED + ${2:-1}))
    }
    finish() {
        section "Summary"
        if [ ${#PROBLEMS[@]} -gt 0 ]; then
            printf '  FAILED: %s\n' "${PROBLEMS[@]}"
        else
            echo "  everything passed"
        fi
        echo "$PASSED passed, $FAILED failed"
        [ "$FAILED" -eq 0 ]
        exit
    }

    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: run me as root (the end-to-end tests start pillarbox-master)" >&2
        problem "not run as root"
        finish
    fi

    section "Packages"
    if ! packaging/install-deps.sh groff-base; then
        problem "installing the build dependencies"
        finish
    fi
    echo "  all present"

    section "Build ($BUILD, address+undefined sanitizers, -Werror)"
    START=$SECONDS
    if [ ! -f "$BUILD/build.ninja" ]; then
        rm -rf "$BUILD"
        if ! meson setup "$BUILD" -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
            -Dwerror=true -Dtests=true >"$SRC/.test-meson-setup.log" 2>&1; then
            cat "$SRC/.test-meson-setup.log"
            rm -f "$SRC/.test-meson-setup.log"
            problem "meson setup failed (the build files are broken)"
            finish
        fi
        rm -f "$SRC/.test-meson-setup.log"
    fi
    mkdir -p "$LOGS"
    # -k 0: build every target that can be built, so that one broken file does
    # not hide the results of everything else.
    if ninja -C "$BUILD" -k 0 -j "$JOBS" >"$LOGS/build.log" 2>&1; then
        echo "  built in $((SECONDS - START))s"
    else
        # The failed commands and the first error lines, cut to a screen
        # width (template backtraces are long).
        grep -E '^FAILED:|error:' "$LOGS/build.log" | cut -c1-300 | head -40
        echo "  ... (whole output in $LOGS/build.log)"
        problem "the build failed: tests of the targets that did not build are missing or stale"
    fi

    section "System users"
    if ! packaging/create-users.sh; then
        problem "packaging/create-users.sh failed"
    fi

    # Prints "name<TAB>timeout<TAB>workdir<TAB>cmd..." per test; workdir "-" is
    # the build directory (no empty fields: read would merge adjacent tabs).
    list_tests() {
        meson introspect --tests "$BUILD" | python3 -c 'import json, sys
for t in json.load(sys.stdin):
    print("\t".join([t["name"], str(t.get("timeout") or 300), t.get("workdir") or "-"] + t["cmd"]))'
    }

    # Adds the Catch2 counts of one test binary's log to the totals.
    count_catch2() {
        local name=$1 log=$2 status=$3 line total passed failed
        # Catch2 v2 ends with either "All tests passed (N assertions in M test
        # cases)" or "test cases: M | P passed | F failed".
        line=$(grep -E '^All tests passed \(|^test cases:' "$log" | tail -1)
        if [[ $line =~ ^All\ tests\ passed.*\ in\ ([0-9]+)\ test\ case ]]; then
            total=${BASH_REMATCH[1]}
            failed=0
        elif [[ $line =~ ^test\ cases:\ *([0-9]+) ]]; then
            total=${BASH_REMATCH[1]}
            failed=0
            [[ $line =~ \|\ *([0-9]+)\ failed ]] && failed=${BASH_REMATCH[1]}
        else
            total=""
        fi
        if [ -z "$total" ]; then
            problem "$name: no Catch2 summary (crashed, killed or timed out; exit status $status)"
            tail -40 "$log"
            return
        fi
        passed=$((total - failed))
        PASSED=$((PASSED + passed))
        FAILED=$((FAILED + failed))
        printf '  %-24s %4d passed, %d failed%s\n' "$name" "$passed" "$failed" \
            "$([ "$status" -ne 0 ] && echo " (exit status $status)")"
        [ "$failed" -eq 0 ] || PROBLEMS+=("$name: $failed test case(s) failed")
        if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
            # Every case passed but the process failed: a leak or other sanitizer
            # report at exit.
            problem "$name: exit status $status after its test cases passed (sanitizer report?)"
        fi
        if [ "$failed" -ne 0 ] || [ "$status" -ne 0 ]; then
            grep -E -B3 -A15 'FAILED:|ERROR: |runtime error:' "$log" | head -120
        fi
    }

    if [ "${PBX_SKIP_UNIT:-0}" != 1 ]; then
        section "Unit tests"
        if ! tests=$(list_tests); then
            problem "meson introspect --tests failed"
            tests=""
        fi
        [ -n "$tests" ] || problem "no unit tests found"
        while IFS=$'\t' read -r -a t; do
            if [ ${#t[@]} -lt 4 ]; then
                [ ${#t[@]} -eq 0 ] || problem "cannot parse the test list line '${t[*]}'"
                continue
            fi
            name=${t[0]} limit=${t[1]} workdir=${t[2]}
            [ "$workdir" != - ] || workdir=$BUILD
            cmd=("${t[@]:3}")
            log=$LOGS/unit-$name.log
            if [ ! -x "${cmd[0]}" ]; then
                problem "$name: ${cmd[0]} was not built"
                continue
            fi
            (cd "$workdir" && timeout -k 10 "$limit" "${cmd[@]}") </dev/null >"$log" 2>&1
            count_catch2 "$name" "$log" $?
        done <<<"$tests"
    fi

    if [ "${PBX_SKIP_E2E:-0}" != 1 ]; then
        section "End-to-end tests"
        PBX_BUILD_DIR=$BUILD timeout -k 30 900 python3 tests/e2e/run.py </dev/null 2>&1 |
            tee "$LOGS/e2e.log"
        line=$(grep -E '^E2E: [0-9]+ passed, [0-9]+ failed$' "$LOGS/e2e.log" | tail -1)
        if [[ $line =~ ^E2E:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
            PASSED=$((PASSED + BASH_REMATCH[1]))
            FAILED=$((FAILED + BASH_REMATCH[2]))
            [ "${BASH_REMATCH[2]}" -eq 0 ] || PROBLEMS+=("end-to-end: ${BASH_REMATCH[2]} test(s) failed")
        else
            problem "end-to-end: tests/e2e/run.py did not finish (crash or timeout)"
        fi
    fi

    finish
}

main "$@"
