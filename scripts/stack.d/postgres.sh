# PostgreSQL 15 clusters (source, target, control): initdb on first start, pg_ctl start/stop.
# Sourced by stack.sh.

pg_datadir() { echo "$STATE/pg/$1"; }

pg_cluster_up() {
  local name="$1" port="$2" data logfile
  data="$(pg_datadir "$name")"
  logfile="$LOGS/postgres-$name.log"
  mkdir -p "$STATE/pg" "$LOGS" "$RUN"
  chown "$SERVICE_USER" "$STATE/pg" "$RUN" 2>/dev/null || true
  touch "$logfile"; chown "$SERVICE_USER" "$logfile" 2>/dev/null || true

  if [ ! -s "$data/PG_VERSION" ]; then
    log "postgres-$name: initdb in $data"
    local pwfile; pwfile="$(mktemp)"; echo "$PG_PASSWORD" >"$pwfile"; chmod 644 "$pwfile"
    as_service_user "$PG_BIN/initdb" -D "$data" -U "$PG_SUPERUSER" --pwfile="$pwfile" \
      --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >>"$logfile" 2>&1 \
      || { rm -f "$pwfile"; fail_with_log "postgres-$name" "$logfile" "initdb failed; remove $data and retry."; }
    rm -f "$pwfile"
    # Settings the migration relies on: logical decoding on both ends (reverse replication later).
    as_service_user tee -a "$data/postgresql.conf" >/dev/null <<CONF

# ---- local stack (scripts/stack.d/postgres.sh) ----
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$RUN'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 200
shared_buffers = 128MB
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
CONF
    as_service_user tee "$data/pg_hba.conf" >/dev/null <<'HBA'
# Local stack: peer for the OS user on the socket, passwords (SCRAM) over TCP, replication included.
local   all             all                                     peer
host    all             all             127.0.0.1/32            scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
HBA
  fi

  if as_service_user "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    return 0
  fi
  log "postgres-$name: starting on 127.0.0.1:$port"
  as_service_user "$PG_BIN/pg_ctl" -D "$data" -l "$logfile" -w -t "$READY_TIMEOUT" start >/dev/null \
    || fail_with_log "postgres-$name" "$logfile" \
         "Is port $port taken by another server (ss -ltnp | grep $port)? Fix it, then rerun make stack-up."
  wait_until "postgres-$name" "$logfile" "Check $logfile." \
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"
}

pg_cluster_down() {
  local name="$1" data; data="$(pg_datadir "$name")"
  [ -s "$data/PG_VERSION" ] || return 0
  if as_service_user "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "stopping postgres-$name"
    as_service_user "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
  fi
}

pg_cluster_pid() {
  local pidfile; pidfile="$(pg_datadir "$1")/postmaster.pid"
  if [ -s "$pidfile" ] && kill -0 "$(head -n1 "$pidfile")" 2>/dev/null; then head -n1 "$pidfile"; fi
}

# psql_super PORT DB SQL: run SQL as the superuser over TCP.
psql_super() {
  PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" \
    -U "$PG_SUPERUSER" -d "$2" -tAc "$3"
}

# ensure_database PORT NAME: create the database if it does not exist yet.
ensure_database() {
  local port="$1" db="$2"
  if [ "$(psql_super "$port" postgres "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
    log "creating database $db on port $port"
    psql_super "$port" postgres "CREATE DATABASE \"$db\""
  fi
}

# The password file the servers' own libpq reads when one subscribes to the other (the native channel, reverse
# replication): subscriptions name it (passfile=…) instead of holding the password. Owned by the servers' OS
# user, mode 0600, or libpq ignores it.
write_subscriber_passfile() {
  local file="$SECRETS/subscriber.pgpass"
  mkdir -p "$SECRETS"
  printf '127.0.0.1:%s:*:%s:%s\n' "$SOURCE_PORT" "$PG_SUPERUSER" "$PG_PASSWORD" "$TARGET_PORT" "$PG_SUPERUSER" \
    "$PG_PASSWORD" >"$file.tmp"
  chmod 600 "$file.tmp"
  chown "$SERVICE_USER" "$file.tmp" 2>/dev/null || true
  mv "$file.tmp" "$file"
}

postgres_up() {
  write_subscriber_passfile
  pg_cluster_up source "$SOURCE_PORT"
  pg_cluster_up target "$TARGET_PORT"
  pg_cluster_up control "$CONTROL_PORT"
  ensure_database "$SOURCE_PORT" shop
  ensure_database "$TARGET_PORT" shop
  ensure_database "$CONTROL_PORT" airflow
  ensure_database "$CONTROL_PORT" migration_control
}

postgres_down() {
  pg_cluster_down control
  pg_cluster_down target
  pg_cluster_down source
}
