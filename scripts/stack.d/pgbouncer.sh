# PgBouncer (Debian package), run as the PostgreSQL OS user: it refuses to run as root.
# Sourced by stack.sh.

PGBOUNCER_BIN="${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}"

pgbouncer_ready() {
  PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -X -h 127.0.0.1 -p "$PGBOUNCER_PORT" -U "$PG_SUPERUSER" \
    -d pgbouncer -tAc "SHOW VERSION" >/dev/null
}

pgbouncer_up() {
  local dir="$STATE/pgbouncer" conf="$STATE/pgbouncer/pgbouncer.ini" logfile="$LOGS/pgbouncer.log"
  mkdir -p "$dir" "$PIDS" "$LOGS" "$RUN"
  # Rendered at every start: routes a cutover changes live in routes.ini (included into [databases]),
  # never in this file. The routes file is created empty once and never overwritten: it must survive
  # restarts (stack-reset deletes it with the rest of the state).
  sed "s#@STATE@#$STATE#g" "$REPO/include/stack/pgbouncer.ini" >"$conf.tmp" && mv "$conf.tmp" "$conf"
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
  if pid_alive "$PIDS/pgbouncer.pid"; then return 0; fi
  if port_open "$PGBOUNCER_PORT"; then
    die "port $PGBOUNCER_PORT is in use by a process this stack did not start (ss -ltnp | grep $PGBOUNCER_PORT)."
  fi
  log "pgbouncer: starting on 127.0.0.1:$PGBOUNCER_PORT (all databases -> source :$SOURCE_PORT)"
  as_service_user "$PGBOUNCER_BIN" -d "$conf" >>"$logfile" 2>&1 \
    || fail_with_log pgbouncer "$logfile" "Check $conf."
  wait_until pgbouncer "$logfile" "Check $conf and $logfile." pgbouncer_ready
}

pgbouncer_down() {
  local pidfile="$PIDS/pgbouncer.pid"
  if pid_alive "$pidfile"; then
    log "stopping pgbouncer (pid $(pid_of "$pidfile"))"
    kill -TERM "$(pid_of "$pidfile")"  # SIGTERM: immediate shutdown; the stack is going away.
    for _ in $(seq 1 30); do pid_alive "$pidfile" || break; sleep 1; done
    if pid_alive "$pidfile"; then kill -KILL "$(pid_of "$pidfile")" 2>/dev/null || true; fi
  fi
  rm -f "$pidfile"
}
