# Apache Kafka 4.1 (KRaft) and Kafka Connect (distributed), run from the jars that
# include/stack/pom.xml resolved into .stack/lib. Sourced by stack.sh.

JAVA="${JAVA:-java}"
KAFKA_CP="$LIB/kafka/*"

render_config() {  # render_config TEMPLATE OUT [NAME=VALUE...]: substitute @STATE@ and each @NAME@.
  local template="$1" out="$2" args=(-e "s#@STATE@#$STATE#g" -e "s#@LIB@#$LIB#g") pair
  shift 2
  for pair in "$@"; do args+=(-e "s#@${pair%%=*}@#${pair#*=}#g"); done
  mkdir -p "$(dirname "$out")"
  sed "${args[@]}" "$template" >"$out"
}

# The brokers of the profile: "node broker_port controller_port" per line. Node 1 is the single profile's broker
# (state in kafka/, pid kafka, log kafka.log); the cluster profile adds nodes 2 and 3 (kafka2/, kafka3/).
kafka_nodes() {
  echo "1 $KAFKA_PORT $KAFKA_CONTROLLER_PORT"
  if [ "$STACK_PROFILE" = cluster ]; then
    echo "2 $KAFKA2_PORT $KAFKA2_CONTROLLER_PORT"
    echo "3 $KAFKA3_PORT $KAFKA3_CONTROLLER_PORT"
  fi
}
kafka_name() { if [ "$1" = 1 ]; then echo kafka; else echo "kafka$1"; fi; }
kafka_bootstrap() {  # every broker, comma-separated
  local node port controller out=""
  while read -r node port controller; do out="${out:+$out,}127.0.0.1:$port"; done < <(kafka_nodes)
  echo "$out"
}
kafka_voters() {
  local node port controller out=""
  while read -r node port controller; do out="${out:+$out,}$node@127.0.0.1:$controller"; done < <(kafka_nodes)
  echo "$out"
}
# Replicas of internal and change topics, and how many must acknowledge a write: 1/1 on one broker, 3/2 on three.
kafka_replication() { if [ "$STACK_PROFILE" = cluster ]; then echo 3; else echo 1; fi; }
kafka_min_insync() { if [ "$STACK_PROFILE" = cluster ]; then echo 2; else echo 1; fi; }
# How connector configs reference passwords (the kafka_connect connection's extra): single node, a file Airflow writes
# into the shared secrets dir; cluster, each worker's own files (worker_secrets_dir).
connect_secrets_key() { if [ "$STACK_PROFILE" = cluster ]; then echo worker_secrets_dir; else echo secrets_dir; fi; }
connect_secrets_dir() { if [ "$STACK_PROFILE" = cluster ]; then echo "$WORKER_SECRETS"; else echo "$SECRETS"; fi; }

kafka_ready() {  # kafka_ready PORT: the broker answers and the cluster has all of the profile's brokers
  "$VENV/bin/python" "$REPO/scripts/stack.d/probe_kafka.py" "127.0.0.1:$1" "$(kafka_nodes | wc -l)"
}

kafka_node_up() {  # kafka_node_up NODE PORT CONTROLLER_PORT: render, format once, start (no wait)
  local node="$1" port="$2" controller="$3" name dir conf logfile
  name="$(kafka_name "$node")"
  dir="$STATE/$name"
  conf="$dir/server.properties"
  logfile="$LOGS/$name.log"
  render_config "$REPO/include/stack/kafka-server.properties" "$conf" "NODE_ID=$node" "PORT=$port" \
    "CONTROLLER_PORT=$controller" "VOTERS=$(kafka_voters)" "DATA_DIR=$dir/data" \
    "REPLICATION=$(kafka_replication)" "MIN_INSYNC=$(kafka_min_insync)"
  if pid_alive "$PIDS/$name.pid"; then return 0; fi
  if port_open "$port"; then
    die "port $port is in use by a process this stack did not start (ss -ltnp | grep $port)."
  fi
  if [ ! -s "$dir/data/meta.properties" ]; then
    log "$name: formatting KRaft storage in $dir/data"
    "$JAVA" -cp "$KAFKA_CP" -Dlog4j2.configurationFile="$REPO/include/stack/log4j2.properties" \
      kafka.tools.StorageTool format -t "$(kafka_cluster_id)" -c "$conf" >>"$logfile" 2>&1 \
      || fail_with_log "$name" "$logfile" "Formatting failed; remove $dir and rerun make stack-up."
  fi
  log "$name: starting broker+controller (KRaft, node $node) on 127.0.0.1:$port"
  start_daemon "$name" "$logfile" "$JAVA" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$REPO/include/stack/log4j2.properties" \
    -cp "$KAFKA_CP" kafka.Kafka "$conf"
}

kafka_cluster_id() {  # one id for every node of the cluster, made once
  local file="$STATE/kafka/cluster.id"
  if [ ! -s "$file" ]; then
    mkdir -p "$STATE/kafka"
    "$JAVA" -cp "$KAFKA_CP" kafka.tools.StorageTool random-uuid 2>>"$LOGS/kafka.log" | tail -n1 >"$file"
  fi
  cat "$file"
}

kafka_up() {
  [ -d "$LIB/kafka" ] || die "Kafka jars missing in $LIB/kafka. Run: make install"
  local node port controller
  # A KRaft quorum of three elects a leader only once a majority runs: start every node, then wait for each.
  while read -r node port controller; do kafka_node_up "$node" "$port" "$controller"; done < <(kafka_nodes)
  while read -r node port controller; do
    wait_until "$(kafka_name "$node")" "$LOGS/$(kafka_name "$node").log" \
      "Check the log; a corrupt log dir can be reset with make stack-reset." kafka_ready "$port"
  done < <(kafka_nodes)
}

# The Connect workers of the profile: "worker rest_port" per line; one group, so a connector's tasks move to the
# other worker when one dies. Worker 1 is the single profile's (state in connect/, pid connect, log connect.log).
connect_workers() {
  echo "1 $CONNECT_PORT"
  if [ "$STACK_PROFILE" = cluster ]; then echo "2 $CONNECT2_PORT"; fi
}
connect_other_urls() {  # the workers after the first, for the kafka_connect connection's failover (comma-separated)
  connect_workers | awk 'NR > 1 { printf "%s%s", (n++ ? "," : ""), "http://127.0.0.1:" $2 }'
}
connect_name() { if [ "$1" = 1 ]; then echo connect; else echo "connect$1"; fi; }

connect_ready() {  # connect_ready PORT
  local plugins
  plugins="$(curl -fsS --max-time 5 -u "$CONNECT_USER:$CONNECT_PASSWORD" \
    "http://127.0.0.1:$1/connector-plugins")" || return 1
  [[ "$plugins" == *"$DEBEZIUM_SOURCE_CLASS"* && "$plugins" == *"$DEBEZIUM_SINK_CLASS"* ]]
}

connect_secrets() {
  mkdir -p "$SECRETS"
  # Connector configs reference this file instead of holding the password (config.providers=file).
  printf 'password=%s\n' "$PG_PASSWORD" >"$SECRETS/postgres.properties"
  chmod 600 "$SECRETS/postgres.properties"
  # The workers' own secrets (the kafka_connect connection's worker_secrets_dir, on the cluster profile): one file
  # per database role, `<host>_<port>_<user>`, as a Kubernetes secret mounted into each Connect pod would be.
  # Connector configs reference them through Kafka's DirectoryConfigProvider; Airflow writes no password.
  mkdir -p "$WORKER_SECRETS"
  chmod 700 "$WORKER_SECRETS"
  local port
  for port in "$SOURCE_PORT" "$TARGET_PORT"; do
    printf '%s' "$PG_PASSWORD" >"$WORKER_SECRETS/127.0.0.1_${port}_$PG_SUPERUSER"
    chmod 600 "$WORKER_SECRETS/127.0.0.1_${port}_$PG_SUPERUSER"
  done
  # REST basic authentication: the login module reads `user: password` lines from this file.
  printf '%s: %s\n' "$CONNECT_USER" "$CONNECT_PASSWORD" >"$SECRETS/connect-rest.password"
  chmod 600 "$SECRETS/connect-rest.password"
  mkdir -p "$STATE/connect"
  cat >"$STATE/connect/connect-jaas.conf" <<JAAS
KafkaConnect {
  org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule required
  file="$SECRETS/connect-rest.password";
};
JAAS
}

connect_worker_up() {  # connect_worker_up WORKER PORT: render and start (no wait)
  local worker="$1" port="$2" name conf logfile
  name="$(connect_name "$worker")"
  conf="$STATE/$name/connect-distributed.properties"
  logfile="$LOGS/$name.log"
  render_config "$REPO/include/stack/connect-distributed.properties" "$conf" "PORT=$port" \
    "BOOTSTRAP=$(kafka_bootstrap)" "REPLICATION=$(kafka_replication)"
  if pid_alive "$PIDS/$name.pid"; then return 0; fi
  if port_open "$port"; then
    die "port $port is in use by a process this stack did not start (ss -ltnp | grep $port)."
  fi
  log "$name: starting distributed worker, REST on 127.0.0.1:$port"
  start_daemon "$name" "$logfile" "$JAVA" -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$REPO/include/stack/log4j2.properties" \
    -Djava.security.auth.login.config="$STATE/connect/connect-jaas.conf" \
    -cp "$KAFKA_CP" org.apache.kafka.connect.cli.ConnectDistributed "$conf"
}

connect_up() {
  [ -d "$LIB/connect-plugins/debezium-connector-postgres" ] \
    || die "Debezium plugins missing in $LIB/connect-plugins. Run: make install"
  # The worker does not start without its override policy (connect-distributed.properties names it).
  [ -f "$POLICY_PLUGIN_DIR/$POLICY_JAR" ] \
    || die "Connect's client override policy missing ($POLICY_PLUGIN_DIR/$POLICY_JAR). Run: make install"
  connect_secrets
  local worker port
  while read -r worker port; do connect_worker_up "$worker" "$port"; done < <(connect_workers)
  while read -r worker port; do
    wait_until "$(connect_name "$worker")" "$LOGS/$(connect_name "$worker").log" \
      "Connect must list $DEBEZIUM_SOURCE_CLASS and $DEBEZIUM_SINK_CLASS; check the plugin dirs and the log." \
      connect_ready "$port"
  done < <(connect_workers)
}

# Down stops every member either profile may have started.
kafka_down() { local name; for name in kafka kafka2 kafka3; do stop_daemon "$name"; done; }
connect_down() { local name; for name in connect connect2; do stop_daemon "$name"; done; }
