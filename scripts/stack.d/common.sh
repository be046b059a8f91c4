# Shared settings and helpers for the local stack scripts. Sourced, not run.
# The fixed local interface (ports) lives here and nowhere else in the scripts.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${STACK_STATE_DIR:-$REPO/.stack}"
LIB="${STACK_LIB_DIR:-$REPO/.stack/lib}"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
RUN="$STATE/run"
SECRETS="$STATE/secrets"
WORKER_SECRETS="$STATE/worker-secrets"  # each Connect worker's own password files (cluster profile)
VENV="$REPO/.venv"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_SUPERUSER=postgres
PG_PASSWORD=postgres
# Kafka Connect's REST API asks for these (basic authentication); the kafka_connect Airflow connection holds them.
CONNECT_USER=pgmigrate
CONNECT_PASSWORD=connect-local

SOURCE_PORT=5433
TARGET_PORT=5434
CONTROL_PORT=5435
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
CONNECT_PORT=8083
# The cluster profile (STACK_PROFILE=cluster): two more brokers (each with its KRaft controller) and a second
# Connect worker in the same group.
KAFKA2_PORT=9094
KAFKA2_CONTROLLER_PORT=9095
KAFKA3_PORT=9096
KAFKA3_CONTROLLER_PORT=9097
CONNECT2_PORT=8084
# ...and Airflow on the CeleryExecutor: Redis as its broker, two Celery workers serving their task logs.
REDIS_PORT=6379
CELERY_WORKER1_LOG_PORT=8793
CELERY_WORKER2_LOG_PORT=8794
PGBOUNCER_PORT=6432
PGBOUNCER2_PORT=6433
AIRFLOW_PORT=8080

# `single` (one broker, one Connect worker: what make test runs) or `cluster` (three brokers with replication 3 and
# min.insync.replicas 2, two Connect workers). A stack keeps the profile it was made with (make stack-reset to change).
STACK_PROFILE="${STACK_PROFILE:-}"
# The profile in effect: the one asked for, else the one the stack was made with, else single.
stack_profile() {
  if [ -n "$STACK_PROFILE" ]; then echo "$STACK_PROFILE"; elif [ -s "$STATE/profile" ]; then cat "$STATE/profile"
  else echo single; fi
}

# The readiness timeout for one component; a slow first start of Airflow (db migrate) needs minutes.
READY_TIMEOUT="${STACK_READY_TIMEOUT:-180}"

DEBEZIUM_SOURCE_CLASS=io.debezium.connector.postgresql.PostgresConnector
DEBEZIUM_SINK_CLASS=io.debezium.connector.jdbc.JdbcSinkConnector
# The workers' connector.client.config.override.policy (include/converters), in a plugin dir of its own.
POLICY_PLUGIN_DIR="$LIB/connect-plugins/pgmigration-override-policy"
POLICY_JAR=pgmigration-override-policy.jar

log() { printf '%s [stack] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '%s [stack] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# The OS user that runs PostgreSQL and PgBouncer: both refuse to run as root.
if [ "$(id -u)" = 0 ]; then SERVICE_USER=postgres; else SERVICE_USER="$(id -un)"; fi

as_service_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$SERVICE_USER" -- "$@"; else "$@"; fi
}

# pid_alive PIDFILE -> 0 when the pid in the file is a live process.
pid_alive() {
  local pidfile="$1" pid
  [ -s "$pidfile" ] || return 1
  pid="$(head -n1 "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # A killed daemon whose parent never reaps it stays a zombie: dead, whatever kill -0 says.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

pid_of() { head -n1 "$1" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# fail_with_log NAME LOGFILE FIX: print the last 50 lines of a component's log, the fix, and exit.
fail_with_log() {
  local name="$1" logfile="$2" fix="$3"
  {
    echo "---- last 50 lines of $logfile ----"
    tail -n 50 "$logfile" 2>/dev/null || echo "(no log written)"
    echo "----"
  } >&2
  die "$name did not become ready within ${READY_TIMEOUT}s. $fix"
}

# wait_until NAME LOGFILE FIX CMD...: poll CMD once a second until it succeeds or READY_TIMEOUT passes.
wait_until() {
  local name="$1" logfile="$2" fix="$3"; shift 3
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then fail_with_log "$name" "$logfile" "$fix"; fi
    sleep 1
  done
}

# start_daemon NAME LOGFILE CMD...: start CMD in its own session (so stop can signal its whole
# process group by pid), record its pid, append output to LOGFILE.
start_daemon() {
  local name="$1" logfile="$2"; shift 2
  mkdir -p "$PIDS" "$LOGS"
  echo "==== $(date -Is) starting $name" >>"$logfile"
  setsid "$@" >>"$logfile" 2>&1 < /dev/null &
  echo $! >"$PIDS/$name.pid"
}

# stop_daemon NAME: TERM the process group recorded for NAME, KILL it after 30 s.
stop_daemon() {
  local name="$1" pidfile="$PIDS/$1.pid" pid
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  pid="$(pid_of "$pidfile")"
  log "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop after 30 s; sending KILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  # Children that outlived the leader (e.g. Airflow task processes) share its session id.
  pkill -KILL -s "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# rss_kib_of_session PID: resident memory of every process in PID's session (its workers and
# children included), in KiB.
rss_kib_of_session() {
  local sid
  sid="$(ps -o sid= -p "$1" 2>/dev/null | tr -d ' ')"
  [ -n "$sid" ] || { echo 0; return; }
  { ps -o rss= -s "$sid" 2>/dev/null || true; } | awk '{s+=$1} END {print s+0}'
}
