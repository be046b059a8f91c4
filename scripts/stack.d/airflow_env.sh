# Environment for every Airflow process and CLI call of the local stack. Sourced by
# stack.sh and scripts/airflow. Secrets (Fernet key, JWT secret) are generated once into
# .stack/airflow/secrets.env and never printed.

export AIRFLOW_HOME="$STATE/airflow"
mkdir -p "$AIRFLOW_HOME"
if [ ! -s "$AIRFLOW_HOME/secrets.env" ]; then
  (
    umask 077
    "$VENV/bin/python" - >"$AIRFLOW_HOME/secrets.env" <<'PY'
import base64, os, secrets
print("AIRFLOW__CORE__FERNET_KEY=" + base64.urlsafe_b64encode(os.urandom(32)).decode())
print("AIRFLOW__API_AUTH__JWT_SECRET=" + secrets.token_urlsafe(48))
print("AIRFLOW__API__SECRET_KEY=" + secrets.token_urlsafe(32))
PY
  )
fi
set -a
# shellcheck disable=SC1091
. "$AIRFLOW_HOME/secrets.env"
set +a

# The local admin login of the UI/API: admin / admin (documented in the README).
if [ ! -s "$AIRFLOW_HOME/passwords.json" ]; then
  echo '{"admin": "admin"}' >"$AIRFLOW_HOME/passwords.json"
fi

export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
if [ "$(stack_profile)" = cluster ]; then
  # Tasks run on two Celery workers (scripts/stack.d/airflow.sh), queued through Redis.
  export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
  export AIRFLOW__CELERY__BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
  export AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql://$PG_SUPERUSER:$PG_PASSWORD@127.0.0.1:$CONTROL_PORT/airflow"
  export AIRFLOW__CELERY__WORKER_CONCURRENCY=4
  # A worker lost with its tasks: the scheduler fails their task instances (and retries them, on the other worker)
  # once no heartbeat came for this long, instead of Airflow's default 300 s.
  export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=20
  export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL=2
fi
export AIRFLOW__CORE__PARALLELISM=8
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AIRFLOW_PORT/execution/"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://$PG_SUPERUSER:$PG_PASSWORD@127.0.0.1:$CONTROL_PORT/airflow"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$AIRFLOW_PORT"
export AIRFLOW__API__WORKERS=1
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=20
export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=20
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
# A quarter second between idle scheduler loops (default 1s): pg_cutover chains short tasks while client
# writes are paused, and each hand-over costs up to one idle sleep.
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.25
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$AIRFLOW_HOME/logs"
# pg_cutover backs the source up here (pg_dump -Fd) and pg_rollback writes its reports here.
export PGMIGRATE_BACKUP_DIR="${PGMIGRATE_BACKUP_DIR:-$STATE/backups}"
# The domain package and the helpers under include/ import from here in tasks and the CLI.
export PYTHONPATH="$REPO/plugins:$REPO${PYTHONPATH:+:$PYTHONPATH}"
