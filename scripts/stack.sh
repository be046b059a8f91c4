#!/usr/bin/env bash
# The local stack of real components (no Docker): PostgreSQL x3, Kafka (KRaft), Kafka Connect
# (distributed, Debezium plugins), PgBouncer x2, Airflow. Usage: scripts/stack.sh up|down|status|reset
#   up      start whatever is not running, wait until each part really serves (idempotent)
#   down    stop everything this stack started, by recorded pid
#   status  one line per part: up/down, pid, port, resident memory; the stack's total RSS
#   reset   down, then delete all state (clusters, Kafka data, Airflow home) except downloaded jars
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=stack.d/common.sh
. "$HERE/stack.d/common.sh"
. "$HERE/stack.d/postgres.sh"
. "$HERE/stack.d/kafka.sh"
. "$HERE/stack.d/pgbouncer.sh"
. "$HERE/stack.d/airflow_env.sh"
. "$HERE/stack.d/airflow.sh"

check_installed() {
  [ -x "$PG_BIN/postgres" ] || die "PostgreSQL 15 not found in $PG_BIN. Run: make install"
  [ -x "$PGBOUNCER_BIN" ] || die "PgBouncer not found at $PGBOUNCER_BIN. Run: make install"
  [ -x "$AIRFLOW" ] || die "Airflow not installed in $VENV. Run: make install"
  [ -d "$LIB/kafka" ] || die "Kafka jars not in $LIB. Run: make install"
  if [ "$(id -u)" = 0 ] && ! runuser -u "$SERVICE_USER" -- test -x "$STATE/.." ; then
    die "user $SERVICE_USER cannot reach $STATE (PostgreSQL runs as $SERVICE_USER). chmod o+x the parent directories of $REPO."
  fi
}

# The profile this stack was made with (.stack/profile); STACK_PROFILE may only repeat it. `single` by default.
resolve_profile() {
  local made=""
  [ -s "$STATE/profile" ] && made="$(cat "$STATE/profile")"
  if [ -n "$made" ] && [ -n "$STACK_PROFILE" ] && [ "$made" != "$STACK_PROFILE" ]; then
    die "the stack in $STATE was made with STACK_PROFILE=$made; to run $STACK_PROFILE: make stack-reset, then STACK_PROFILE=$STACK_PROFILE make stack-up."
  fi
  STACK_PROFILE="${STACK_PROFILE:-${made:-single}}"
  case "$STACK_PROFILE" in
    single|cluster) ;;
    *) die "STACK_PROFILE must be single or cluster, got '$STACK_PROFILE'." ;;
  esac
}

cmd_up() {
  local start=$SECONDS
  check_installed
  mkdir -p "$STATE" "$LOGS" "$PIDS" "$RUN"
  chmod 755 "$STATE"
  resolve_profile
  echo "$STACK_PROFILE" >"$STATE/profile"
  log "profile $STACK_PROFILE"
  postgres_up
  kafka_up
  connect_up
  pgbouncer_up
  airflow_up
  log "stack up in $((SECONDS - start))s"
  cmd_status
}

cmd_down() {
  airflow_down
  connect_down
  kafka_down
  pgbouncer_down
  postgres_down
  log "stack down"
}

# status_line NAME PID PORT
status_line() {
  local name="$1" pid="$2" port="$3" state=down rss=0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    state=up
    rss="$(rss_kib_of_session "$pid")"
    if ! port_open "$port"; then state=starting; fi
  else
    pid=-
  fi
  TOTAL_RSS=$((TOTAL_RSS + rss))
  printf '%-22s %-9s %-8s %-6s %8s MiB\n' "$name" "$state" "$pid" "$port" "$((rss / 1024))"
  [ "$state" = up ] || ALL_UP=0
}

cmd_status() {
  TOTAL_RSS=0 ALL_UP=1
  resolve_profile
  echo "profile: $STACK_PROFILE"
  printf '%-22s %-9s %-8s %-6s %12s\n' PART STATE PID PORT RSS
  status_line postgres-source "$(pg_cluster_pid source)" "$SOURCE_PORT"
  status_line postgres-target "$(pg_cluster_pid target)" "$TARGET_PORT"
  status_line postgres-control "$(pg_cluster_pid control)" "$CONTROL_PORT"
  local node port controller worker
  while read -r node port controller; do
    status_line "$(kafka_name "$node")" "$(pid_of "$PIDS/$(kafka_name "$node").pid")" "$port"
  done < <(kafka_nodes)
  while read -r worker port; do
    status_line "kafka-$(connect_name "$worker")" "$(pid_of "$PIDS/$(connect_name "$worker").pid")" "$port"
  done < <(connect_workers)
  status_line pgbouncer "$(pid_of "$PIDS/pgbouncer.pid")" "$PGBOUNCER_PORT"
  status_line pgbouncer2 "$(pid_of "$PIDS/pgbouncer2.pid")" "$PGBOUNCER2_PORT"
  status_line airflow-api-server "$(pid_of "$PIDS/airflow-api-server.pid")" "$AIRFLOW_PORT"
  local component
  for component in scheduler dag-processor triggerer; do
    status_line "airflow-$component" "$(pid_of "$PIDS/airflow-$component.pid")" "$AIRFLOW_PORT"
  done
  if [ "$STACK_PROFILE" = cluster ]; then
    status_line redis "$(pid_of "$PIDS/redis.pid")" "$REDIS_PORT"
    status_line airflow-celery-worker1 "$(pid_of "$PIDS/airflow-celery-worker1.pid")" "$CELERY_WORKER1_LOG_PORT"
    status_line airflow-celery-worker2 "$(pid_of "$PIDS/airflow-celery-worker2.pid")" "$CELERY_WORKER2_LOG_PORT"
  fi
  printf '%-22s %-9s %-8s %-6s %8s MiB\n' TOTAL "" "" "" "$((TOTAL_RSS / 1024))"
  if [ "$ALL_UP" = 1 ]; then
    echo "UI/API: http://127.0.0.1:$AIRFLOW_PORT (login admin / admin)"
  fi
  [ "$ALL_UP" = 1 ]
}

cmd_reset() {
  cmd_down
  log "deleting stack state in $STATE (keeping downloaded jars in $LIB)"
  find "$STATE" -mindepth 1 -maxdepth 1 ! -name lib ! -name stamps -exec rm -rf {} +
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  *) echo "usage: $0 up|down|status|reset" >&2; exit 2 ;;
esac
