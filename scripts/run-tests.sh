#!/usr/bin/env bash
# make test: lint, bring the stack up, run the whole suite against it, and always leave
# nothing running. Extra arguments go to pytest (e.g. scripts/run-tests.sh -k hook).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/stack.d/common.sh"

cleanup() { "$HERE/stack.sh" down || true; }
trap cleanup EXIT

cd "$REPO"
log "test: ruff check"
"$VENV/bin/ruff" check . || die "ruff found problems (fix them, or run: .venv/bin/ruff check --fix .)"
log "test: ruff format --check"
"$VENV/bin/ruff" format --check . || die "files are not formatted (run: .venv/bin/ruff format .)"

log "test: make stack-up"
"$HERE/stack.sh" up || die "the stack did not come up; see the component log printed above"

. "$HERE/stack.d/airflow_env.sh"
log "test: pytest"
"$VENV/bin/pytest" --durations=25 "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: the suite is broken (check testpaths and the -k/-m filters)." >&2
  rc=1
fi
exit $rc
