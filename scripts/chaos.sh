#!/usr/bin/env bash
# make chaos: the whole fault matrix (issue #7, cases 1-8; on the cluster profile also 9-14) against the local
# stack, then one table:
# case, fault, recovery time (fault cleared -> lag < 5 s), rows compared, differences, alerts.
# `make test` runs the fast cases (2, 6) only. Extra arguments go to pytest (e.g. -k case4).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/stack.d/common.sh"
cd "$REPO"

"$HERE/stack.sh" up >/dev/null || die "the stack did not come up; run make stack-up to see which part failed"
. "$HERE/stack.d/airflow_env.sh"
log "chaos: fault matrix and faults inside the cutover (about 25 minutes; each case kills or stops a part and brings it back)"
rm -f test-artifacts/cutover-faults.md
# The fault matrix, then faults inside the cutover's pause (every step kill -9'd, held locks at each step).
# The cluster profile adds its own cases (a broker, a Connect worker, a Celery worker killed; nothing restarted).
select="integration and not chaos_cluster"
if [ "$(stack_profile)" = cluster ]; then select=integration; fi
"$VENV/bin/pytest" tests/integration/test_fault_matrix.py tests/integration/test_pg_cutover.py \
  -m "$select" -k "test_case or cannot_finish or kill_9 or connect_killed or damaged" \
  -p no:cacheprovider "$@"
rc=$?
if [ -s test-artifacts/fault-matrix.md ]; then
  echo
  echo "fault matrix (test-artifacts/fault-matrix.md):"
  cat test-artifacts/fault-matrix.md
fi
if [ -s test-artifacts/cutover-faults.md ]; then
  echo
  echo "faults inside the cutover's pause (test-artifacts/cutover-faults.md):"
  cat test-artifacts/cutover-faults.md
fi
exit $rc
