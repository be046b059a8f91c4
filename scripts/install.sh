#!/usr/bin/env bash
# Installs everything the stack and the tests need, idempotently: a second run checks and
# skips (no downloads). Debian packages (PostgreSQL 15, PgBouncer, Chromium for the report
# test), the Python venv from requirements*.txt, the Kafka/Debezium jars resolved by include/stack/pom.xml, and our own
# Connect classes (include/converters) built into the Debezium PostgreSQL and JDBC sink plugin dirs and the
# workers' client override policy into its own plugin dir.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/stack.d/common.sh"

STAMPS="$STATE/stamps"
mkdir -p "$STAMPS" "$LIB"

install_debian_packages() {
  local missing=()
  [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15 postgresql-client-15)
  [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  command -v curl >/dev/null || missing+=(curl)
  command -v runuser >/dev/null || missing+=(util-linux)
  # Headless browser: the tests open the migration report in it (make test only).
  command -v chromium >/dev/null || missing+=(chromium)
  # The Celery broker of the cluster profile (STACK_PROFILE=cluster).
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ ${#missing[@]} -eq 0 ]; then
    log "install: Debian packages present (postgresql-15, pgbouncer, chromium, redis-server)"
    return
  fi
  [ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}"
  log "install: apt-get install ${missing[*]}"
  # No default cluster on 5432: the stack runs its own clusters.
  mkdir -p /etc/postgresql-common
  [ -f /etc/postgresql-common/createcluster.conf ] || echo 'create_main_cluster = false' \
    >/etc/postgresql-common/createcluster.conf
  apt-get update -qq
  # No package may start its own daemon (redis-server would take 6379 from the stack's): policy-rc.d says no.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
}

install_python() {
  local want stamp
  want="$(cat "$REPO/requirements.txt" "$REPO/requirements-dev.txt" | sha1sum | cut -c1-12)"
  stamp="$STAMPS/venv-$want"
  if [ -f "$stamp" ] && [ -x "$VENV/bin/airflow" ]; then
    log "install: Python venv up to date ($VENV)"
    return
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "install: creating $VENV"
    python3 -m venv "$VENV"
  fi
  log "install: pip install -r requirements.txt -r requirements-dev.txt (first run takes a few minutes)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO/requirements.txt" -r "$REPO/requirements-dev.txt"
  rm -f "$STAMPS"/venv-*
  touch "$stamp"
}

install_jars() {
  local want stamp
  want="$(sha1sum "$REPO/include/stack/pom.xml" | cut -c1-12)"
  stamp="$STAMPS/jars-$want"
  if [ -f "$stamp" ] && [ -d "$LIB/kafka" ] && [ -d "$LIB/connect-plugins/debezium-connector-jdbc" ]; then
    log "install: Kafka and Debezium jars up to date ($LIB)"
    return
  fi
  command -v mvn >/dev/null || die "Maven (mvn) not found; install it: apt-get install maven"
  log "install: resolving Kafka 4.1.1 and Debezium plugin archives with Maven into $LIB"
  # The dependency plugin's unpack markers (include/stack/target) go too: with them it would skip an archive
  # ("already unpacked") whose directory was just removed, e.g. the sink's when only the source's version changed.
  rm -rf "$LIB/kafka" "$LIB/connect-plugins" "$REPO/include/stack/target"
  mkdir -p "$LOGS"
  if ! mvn -B -Dstyle.color=never -f "$REPO/include/stack/pom.xml" -Dstack.lib="$LIB" package \
      >"$LOGS/install-maven.log" 2>&1; then
    tail -n 50 "$LOGS/install-maven.log" >&2
    die "Maven could not resolve the stack jars (log: $LOGS/install-maven.log). Is Maven Central reachable?"
  fi
  rm -f "$STAMPS"/jars-*
  touch "$stamp"
}

# The jar must sit in each connector's plugin dir: Connect loads a converter, post processor, transform or
# Hibernate statement inspector through its connector's class loader. Runs after install_jars, which empties connect-plugins when
# the stack pom changes, so a missing jar there is re-copied even when the build is up to date.
# The same build makes the workers' client override policy (connector.client.config.override.policy) a jar of its
# own: Connect loads it once for the worker, from its own plugin dir ($POLICY_PLUGIN_DIR, common.sh).
install_converters() {
  # One jar, copied into both Debezium plugin dirs: converter, ToastReselector and DropVanishedRowUpdates load
  # through the PostgreSQL connector's class loader, TruncateStatementInspector through the JDBC sink's.
  local module="$REPO/include/converters" want stamp jar policy_jar dests dest current=1
  want="$(cd "$module" && find pom.xml src -type f | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -c1-12)"
  stamp="$STAMPS/converters-$want"
  jar="$module/target/pgmigration-converters.jar"
  policy_jar="$module/target/pgmigration-converters-override-policy.jar"
  dests=("$LIB/connect-plugins/debezium-connector-postgres" "$LIB/connect-plugins/debezium-connector-jdbc")
  for dest in "${dests[@]}"; do
    [ -d "$dest" ] || die "Debezium plugin dir $dest missing; install_jars should have created it"
    cmp -s "$jar" "$dest/pgmigration-converters.jar" 2>/dev/null || current=0
  done
  cmp -s "$policy_jar" "$POLICY_PLUGIN_DIR/$POLICY_JAR" 2>/dev/null || current=0
  if [ -f "$stamp" ] && [ -f "$jar" ] && [ -f "$policy_jar" ] && [ "$current" = 1 ]; then
    log "install: converters and override policy jars up to date (${dests[*]} $POLICY_PLUGIN_DIR)"
    return
  fi
  if [ ! -f "$stamp" ] || [ ! -f "$jar" ] || [ ! -f "$policy_jar" ]; then
    command -v mvn >/dev/null || die "Maven (mvn) not found; install it: apt-get install maven"
    log "install: building include/converters (converter, TOAST reselector, truncate inspector, override policy) with Maven"
    mkdir -p "$LOGS"
    if ! mvn -B -Dstyle.color=never -f "$module/pom.xml" package >"$LOGS/install-converters.log" 2>&1; then
      tail -n 50 "$LOGS/install-converters.log" >&2
      die "Building the Debezium converter failed (log: $LOGS/install-converters.log): see the compiler or test errors above."
    fi
    rm -f "$STAMPS"/converters-*
    touch "$stamp"
  fi
  for dest in "${dests[@]}"; do
    cp "$jar" "$dest/pgmigration-converters.jar"
  done
  mkdir -p "$POLICY_PLUGIN_DIR"
  cp "$policy_jar" "$POLICY_PLUGIN_DIR/$POLICY_JAR"
  log "install: converters jar copied into ${dests[*]}, override policy jar into $POLICY_PLUGIN_DIR" \
    "(restart Kafka Connect to load a changed jar)"
}

start=$SECONDS
install_debian_packages
install_python
install_jars
install_converters
log "install: done in $((SECONDS - start))s"
