# Airflow 3.3 (api-server, scheduler, dag-processor, triggerer) from the project's .venv,
# metadata in the control cluster. Sourced by stack.sh.

AIRFLOW="$VENV/bin/airflow"
AIRFLOW_COMPONENTS="api-server scheduler dag-processor triggerer"

airflow_health_ok() {
  local health
  health="$(curl -fsS --max-time 5 "http://127.0.0.1:$AIRFLOW_PORT/api/v2/monitor/health")" || return 1
  "$VENV/bin/python" -c '
import json, sys
health = json.loads(sys.argv[1])
bad = [k for k, v in health.items() if isinstance(v, dict) and v.get("status") != "healthy"]
sys.exit(1 if bad else 0)' "$health"
}

airflow_db_setup() {
  local logfile="$LOGS/airflow-setup.log" stamp version
  version="$("$VENV/bin/python" -c 'import airflow; print(airflow.__version__)')"
  stamp="$AIRFLOW_HOME/.db-migrated-$version"
  if [ ! -f "$stamp" ]; then
    log "airflow: migrating metadata database (first start takes a minute)"
    "$AIRFLOW" db migrate >>"$logfile" 2>&1 \
      || fail_with_log airflow-db-migrate "$logfile" "Is the control DB up on $CONTROL_PORT?"
    touch "$stamp"
  fi
  local conns="$REPO/include/stack/airflow-connections.json" conn_stamp
  conn_stamp="$AIRFLOW_HOME/.connections-$(sha1sum "$conns" | cut -c1-12)"
  if [ ! -f "$conn_stamp" ]; then
    log "airflow: creating or updating connections from $conns (migration_source, migration_target, migration_control, kafka_connect, kafka_default, pgbouncer_admin, pgbouncer_admin_2)"
    # kafka_connect's secrets_dir is where connector password files go (read by Connect's file provider).
    sed "s#@STATE@#$STATE#g" "$conns" >"$AIRFLOW_HOME/connections.json"
    "$AIRFLOW" connections import --overwrite "$AIRFLOW_HOME/connections.json" >>"$logfile" 2>&1 \
      || fail_with_log airflow-connections "$logfile" "Check $conns."
    rm -f "$AIRFLOW_HOME"/.connections-*
    touch "$conn_stamp"
  fi
}

airflow_up() {
  local component started=0
  airflow_db_setup
  for component in $AIRFLOW_COMPONENTS; do
    if pid_alive "$PIDS/airflow-$component.pid"; then continue; fi
    if [ "$component" = api-server ] && port_open "$AIRFLOW_PORT"; then
      die "port $AIRFLOW_PORT is in use by a process this stack did not start (ss -ltnp | grep $AIRFLOW_PORT)."
    fi
    log "airflow: starting $component"
    start_daemon "airflow-$component" "$LOGS/airflow-$component.log" "$AIRFLOW" "$component"
    started=1
  done
  if [ "$started" = 1 ]; then
    wait_until airflow "$LOGS/airflow-api-server.log" \
      "Every component must report healthy at /api/v2/monitor/health; see the airflow-*.log files in $LOGS." \
      airflow_health_ok
  fi
}

airflow_down() {
  local component
  for component in triggerer dag-processor scheduler api-server; do stop_daemon "airflow-$component"; done
}
