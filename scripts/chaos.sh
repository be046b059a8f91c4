#!/usr/bin/env bash
# make chaos: the whole fault matrix (issue #7, cases 1-8) against the local stack, then one table:
# case, fault, recovery time (fault cleared -> lag < 5 s), rows compared, differences, alerts.
# `make test` runs the fast cases (2, 5, 6) only. Extra arguments go to pytest (e.g. -k case4).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/stack.d/common.sh"
cd "$REPO"

"$HERE/stack.sh" up >/dev/null || die "the stack did not come up; run make stack-up to see which part failed"
. "$HERE/stack.d/airflow_env.sh"
log "chaos: fault matrix (about 15 minutes; each case kills or stops a part of the stack and brings it back)"
"$VENV/bin/pytest" tests/integration/test_fault_matrix.py -m "chaos_fast or chaos_full" -p no:cacheprovider "$@"
rc=$?
if [ -s test-artifacts/fault-matrix.md ]; then
  echo
  echo "fault matrix (test-artifacts/fault-matrix.md):"
  cat test-artifacts/fault-matrix.md
fi
exit $rc
