# PgBouncer (Debian package), run as the PostgreSQL OS user: it refuses to run as root.
# Two instances, as production runs several behind a load balancer: `pgbouncer` on $PGBOUNCER_PORT and
# `pgbouncer2` on $PGBOUNCER2_PORT, each with its own state directory ($STATE/<name>: rendered ini,
# routes file, userlist), pid file and log. A cutover pauses and switches both. Sourced by stack.sh.

PGBOUNCER_BIN="${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}"

# The second instance accepts only 100 clients (max_client_conn), small on purpose: a test
# (tests/integration/test_route_switch.py) fills it during a pause and switches anyway. The first keeps 500.
PGBOUNCER2_MAX_CLIENT_CONN=100

# pgbouncer_ready PORT
pgbouncer_ready() {
  PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -X -h 127.0.0.1 -p "$1" -U "$PG_SUPERUSER" \
    -d pgbouncer -tAc "SHOW VERSION" >/dev/null
}

# pgbouncer_instance_up NAME PORT MAX_CLIENT_CONN: start one PgBouncer unless its recorded pid is alive.
pgbouncer_instance_up() {
  local name="$1" port="$2" max_client_conn="$3"
  local dir="$STATE/$name" conf="$STATE/$name/pgbouncer.ini" logfile="$LOGS/$name.log"
  mkdir -p "$dir" "$PIDS" "$LOGS" "$RUN"
  # Rendered at every start: routes a cutover changes live in routes.ini (included into [databases]),
  # never in this file. The routes file is created empty once and never overwritten: it must survive
  # restarts (stack-reset deletes it with the rest of the state).
  sed -e "s#@STATE@#$STATE#g" -e "s#@NAME@#$name#g" -e "s#@PORT@#$port#g" \
    -e "s#@MAX_CLIENT_CONN@#$max_client_conn#g" "$REPO/include/stack/pgbouncer.ini" >"$conf.tmp" \
    && mv "$conf.tmp" "$conf"
  if [ ! -f "$dir/routes.ini" ]; then
    printf '; Explicit PgBouncer routes (pgmigrate.route_switch); none yet: every database follows *.\n' \
      >"$dir/routes.ini"
  fi
  chmod 644 "$dir/routes.ini"
  printf '"%s" "%s"\n' "$PG_SUPERUSER" "$PG_PASSWORD" >"$dir/userlist.txt"
  chmod 600 "$dir/userlist.txt"
  touch "$logfile"
  chown -R "$SERVICE_USER" "$dir" "$logfile" 2>/dev/null || true
  chown "$SERVICE_USER" "$PIDS" "$RUN" 2>/dev/null || true
  if pid_alive "$PIDS/$name.pid"; then return 0; fi
  if port_open "$port"; then
    die "port $port is in use by a process this stack did not start (ss -ltnp | grep $port)."
  fi
  log "$name: starting on 127.0.0.1:$port (all databases -> source :$SOURCE_PORT, max_client_conn $max_client_conn)"
  as_service_user "$PGBOUNCER_BIN" -d "$conf" >>"$logfile" 2>&1 \
    || fail_with_log "$name" "$logfile" "Check $conf."
  wait_until "$name" "$logfile" "Check $conf and $logfile." pgbouncer_ready "$port"
}

pgbouncer_up() {
  pgbouncer_instance_up pgbouncer "$PGBOUNCER_PORT" 500
  pgbouncer_instance_up pgbouncer2 "$PGBOUNCER2_PORT" "$PGBOUNCER2_MAX_CLIENT_CONN"
}

# pgbouncer_instance_down NAME
pgbouncer_instance_down() {
  local name="$1" pidfile="$PIDS/$1.pid"
  if pid_alive "$pidfile"; then
    log "stopping $name (pid $(pid_of "$pidfile"))"
    kill -TERM "$(pid_of "$pidfile")"  # SIGTERM: immediate shutdown; the stack is going away.
    for _ in $(seq 1 30); do pid_alive "$pidfile" || break; sleep 1; done
    if pid_alive "$pidfile"; then kill -KILL "$(pid_of "$pidfile")" 2>/dev/null || true; fi
  fi
  rm -f "$pidfile"
}

pgbouncer_down() {
  pgbouncer_instance_down pgbouncer2
  pgbouncer_instance_down pgbouncer
}
