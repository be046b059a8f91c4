# Apache Kafka 4.1 (KRaft) and Kafka Connect (distributed), run from the jars that
# include/stack/pom.xml resolved into .stack/lib. Sourced by stack.sh.

JAVA="${JAVA:-java}"
KAFKA_CP="$LIB/kafka/*"

render_config() {  # render_config TEMPLATE OUT: substitute @STATE@.
  mkdir -p "$(dirname "$2")"
  sed "s#@STATE@#$STATE#g" "$1" >"$2"
}

kafka_ready() {
  "$VENV/bin/python" "$REPO/scripts/stack.d/probe_kafka.py" "127.0.0.1:$KAFKA_PORT"
}

kafka_up() {
  local conf="$STATE/kafka/server.properties" logfile="$LOGS/kafka.log"
  [ -d "$LIB/kafka" ] || die "Kafka jars missing in $LIB/kafka. Run: make install"
  render_config "$REPO/include/stack/kafka-server.properties" "$conf"
  if pid_alive "$PIDS/kafka.pid"; then return 0; fi
  if port_open "$KAFKA_PORT"; then
    die "port $KAFKA_PORT is in use by a process this stack did not start (ss -ltnp | grep $KAFKA_PORT)."
  fi
  if [ ! -s "$STATE/kafka/data/meta.properties" ]; then
    log "kafka: formatting KRaft storage in $STATE/kafka/data"
    local cluster_id
    cluster_id="$("$JAVA" -cp "$KAFKA_CP" kafka.tools.StorageTool random-uuid 2>>"$logfile" | tail -n1)"
    "$JAVA" -cp "$KAFKA_CP" -Dlog4j2.configurationFile="$REPO/include/stack/log4j2.properties" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$conf" >>"$logfile" 2>&1 \
      || fail_with_log kafka "$logfile" "Formatting failed; remove $STATE/kafka and rerun make stack-up."
  fi
  log "kafka: starting broker+controller (KRaft) on 127.0.0.1:$KAFKA_PORT"
  start_daemon kafka "$logfile" "$JAVA" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$REPO/include/stack/log4j2.properties" \
    -cp "$KAFKA_CP" kafka.Kafka "$conf"
  wait_until kafka "$logfile" "Check $logfile; a corrupt log dir can be reset with make stack-reset." kafka_ready
}

connect_ready() {
  local plugins
  plugins="$(curl -fsS --max-time 5 "http://127.0.0.1:$CONNECT_PORT/connector-plugins")" || return 1
  [[ "$plugins" == *"$DEBEZIUM_SOURCE_CLASS"* && "$plugins" == *"$DEBEZIUM_SINK_CLASS"* ]]
}

connect_up() {
  local conf="$STATE/connect/connect-distributed.properties" logfile="$LOGS/connect.log"
  [ -d "$LIB/connect-plugins/debezium-connector-postgres" ] \
    || die "Debezium plugins missing in $LIB/connect-plugins. Run: make install"
  # The worker does not start without its override policy (connect-distributed.properties names it).
  [ -f "$POLICY_PLUGIN_DIR/$POLICY_JAR" ] \
    || die "Connect's client override policy missing ($POLICY_PLUGIN_DIR/$POLICY_JAR). Run: make install"
  render_config "$REPO/include/stack/connect-distributed.properties" "$conf"
  mkdir -p "$SECRETS"
  # Connector configs reference this file instead of holding the password (config.providers=file).
  printf 'password=%s\n' "$PG_PASSWORD" >"$SECRETS/postgres.properties"
  chmod 600 "$SECRETS/postgres.properties"
  if pid_alive "$PIDS/connect.pid"; then return 0; fi
  if port_open "$CONNECT_PORT"; then
    die "port $CONNECT_PORT is in use by a process this stack did not start (ss -ltnp | grep $CONNECT_PORT)."
  fi
  log "connect: starting distributed worker, REST on 127.0.0.1:$CONNECT_PORT"
  start_daemon connect "$logfile" "$JAVA" -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$REPO/include/stack/log4j2.properties" \
    -cp "$KAFKA_CP" org.apache.kafka.connect.cli.ConnectDistributed "$conf"
  wait_until connect "$logfile" \
    "Connect must list $DEBEZIUM_SOURCE_CLASS and $DEBEZIUM_SINK_CLASS; check the plugin dirs and $logfile." \
    connect_ready
}

kafka_down() { stop_daemon kafka; }
connect_down() { stop_daemon connect; }
