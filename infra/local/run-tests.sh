#!/usr/bin/env bash
# Runs the test suite with a ceiling on its wall time. Every wait inside the tests has its own
# deadline; this is the net under them: a run that still hangs is stopped, and the tests that
# started but never finished are named, so the hang is a failure with a lead instead of a CI
# job that sits until its own limit.
set -uo pipefail
limit="${FISSION_TEST_TIME_LIMIT:-1500}"
log="$(mktemp /tmp/fission-test-XXXXXX.log)"
timeout --kill-after=30 "$limit" "${SWIFT:-swift}" test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "the test run did not finish within ${limit} s; tests still running when it was stopped:" >&2
  started=$(grep -oE 'Test [A-Za-z0-9_]+\(.*\) started' "$log" | sed -E 's/ started$//' | sort -u)
  ended=$(grep -oE 'Test [A-Za-z0-9_]+\(.*\) (passed|failed)' "$log" | sed -E 's/ (passed|failed)$//' | sort -u)
  comm -23 <(echo "$started") <(echo "$ended") | sed 's/^/  /' >&2
fi
rm -f "$log"
exit "$status"
