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
  conn_stamp="$AIRFLOW_HOME/.connections-$STACK_PROFILE-$(sha1sum "$conns" | cut -c1-12)"
  if [ ! -f "$conn_stamp" ]; then
    log "airflow: creating or updating connections from $conns (migration_source, migration_target, migration_control, kafka_connect, kafka_default, pgbouncer_admin, pgbouncer_admin_2)"
    # kafka_connect's secrets_dir is where connector password files go (read by Connect's file provider); on the
    # cluster profile its worker_secrets_dir names the workers' own password files instead (Airflow writes none).
    # kafka_default names the profile's brokers and how its topics are replicated.
    sed -e "s#@STATE@#$STATE#g" -e "s#@KAFKA_BOOTSTRAP@#$(kafka_bootstrap)#g" \
      -e "s#@KAFKA_REPLICATION@#$(kafka_replication)#g" -e "s#@KAFKA_MIN_INSYNC@#$(kafka_min_insync)#g" \
      -e "s#@CONNECT_SECRETS_KEY@#$(connect_secrets_key)#g" -e "s#@CONNECT_SECRETS_DIR@#$(connect_secrets_dir)#g" \
      -e "s#@CONNECT_OTHER_URLS@#$(connect_other_urls)#g" \
      "$conns" >"$AIRFLOW_HOME/connections.json"
    "$AIRFLOW" connections import --overwrite "$AIRFLOW_HOME/connections.json" >>"$logfile" 2>&1 \
      || fail_with_log airflow-connections "$logfile" "Check $conns."
    rm -f "$AIRFLOW_HOME"/.connections-*
    touch "$conn_stamp"
  fi
}

airflow_up() {
  local component started=0
  if [ "$STACK_PROFILE" = cluster ]; then redis_up; fi
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
  if [ "$STACK_PROFILE" = cluster ]; then celery_workers_up; fi
}

# The cluster profile's Celery side: Redis (the broker) and two workers, each in its own working directory (a task
# that wrote to its current directory would not find the file on the other worker) and serving its own task logs.
redis_up() {
  local logfile="$LOGS/redis.log"
  command -v redis-server >/dev/null || die "redis-server not found. Run: make install"
  if pid_alive "$PIDS/redis.pid"; then return 0; fi
  if port_open "$REDIS_PORT"; then
    die "port $REDIS_PORT is in use by a process this stack did not start (ss -ltnp | grep $REDIS_PORT)."
  fi
  mkdir -p "$STATE/redis"
  log "redis: starting on 127.0.0.1:$REDIS_PORT (the Celery broker)"
  start_daemon redis "$logfile" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" \
    --save "" --appendonly no --protected-mode yes
  wait_until redis "$logfile" "Check $logfile." redis_ready
}
redis_ready() { [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

celery_worker_ready() {  # celery_worker_ready N LOGFILE FIRST_LINE: "celery@workerN… ready." logged since FIRST_LINE
  tail -n "+$3" "$2" | grep -q "worker$1@.* ready"
}

celery_workers_up() {
  local n port name dir logfile first
  for n in 1 2; do
    name="airflow-celery-worker$n"
    if pid_alive "$PIDS/$name.pid"; then continue; fi
    port="$(eval echo "\$CELERY_WORKER${n}_LOG_PORT")"
    dir="$STATE/celery-worker$n"
    logfile="$LOGS/$name.log"
    mkdir -p "$dir"
    touch "$logfile"
    first=$(($(wc -l <"$logfile") + 1))
    log "airflow: starting Celery worker $n (working directory $dir, task logs served on $port)"
    start_daemon "$name" "$logfile" env -C "$dir" AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$port" \
      "$AIRFLOW" celery worker --celery-hostname "worker$n@%h" --concurrency 4
    wait_until "$name" "$logfile" "Check $logfile; the broker is Redis on $REDIS_PORT." \
      celery_worker_ready "$n" "$logfile" "$first"
  done
}

airflow_down() {
  local component
  for component in celery-worker2 celery-worker1 triggerer dag-processor scheduler api-server; do
    stop_daemon "airflow-$component"
  done
  stop_daemon redis
}
