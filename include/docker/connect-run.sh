#!/bin/sh
# Starts a Kafka Connect worker of the Docker Compose stack (the image's CMD): renders the image's
# /opt/connect/connect-distributed.properties with this worker's settings, as scripts/stack.d/kafka.sh renders the
# local stack's, then runs the worker in the foreground. docker-compose.yml sets the three variables per worker.
set -eu
: "${CONNECT_BOOTSTRAP_SERVERS:?set to every broker, host:port comma-separated}"
: "${CONNECT_REPLICATION:?set to the replication of Connect's internal topics}"
: "${CONNECT_ADVERTISED_HOST:?set to this worker's host name in the compose network}"
# /opt/kafka (the default log dir) belongs to the image's appuser; compose runs the worker as the Airflow uid.
export LOG_DIR="${LOG_DIR:-/tmp/connect-logs}"
sed -e "s#@BOOTSTRAP@#${CONNECT_BOOTSTRAP_SERVERS}#g" \
    -e "s#@REPLICATION@#${CONNECT_REPLICATION}#g" \
    -e "s#@ADVERTISED_HOST@#${CONNECT_ADVERTISED_HOST}#g" \
    /opt/connect/connect-distributed.properties >/tmp/connect-distributed.properties
exec /opt/kafka/bin/connect-distributed.sh /tmp/connect-distributed.properties
