# syntax=docker/dockerfile:1
# Kafka Connect of the Docker Compose stack: the apache/kafka image plus the Debezium PostgreSQL
# source and JDBC sink plugin archives, resolved by the same Maven pom as the local stack
# (include/stack/pom.xml), so both stacks run the same plugin versions, plus our converter and the workers'
# client override policy (include/converters).
# Build context: the repository root (see connect.Dockerfile.dockerignore).
ARG KAFKA_VERSION=4.1.1
ARG DEBEZIUM_SOURCE_VERSION=3.7.0.Final
ARG DEBEZIUM_SINK_VERSION=3.6.0.Final

FROM maven:3.9-eclipse-temurin-17 AS plugins
ARG KAFKA_VERSION
ARG DEBEZIUM_SOURCE_VERSION
ARG DEBEZIUM_SINK_VERSION
WORKDIR /build
COPY include/stack/pom.xml pom.xml
# The -D flags override the pom's properties, so the build ARGs are the single knob here.
RUN --mount=type=cache,target=/root/.m2 \
    mvn -B -f pom.xml -Dstack.lib=/stack/lib \
        -Dkafka.version="${KAFKA_VERSION}" -Ddebezium.source.version="${DEBEZIUM_SOURCE_VERSION}" \
        -Ddebezium.sink.version="${DEBEZIUM_SINK_VERSION}" package \
 && test -d /stack/lib/connect-plugins/debezium-connector-postgres \
 && test -d /stack/lib/connect-plugins/debezium-connector-jdbc
# Our Connect classes (see include/converters/pom.xml) go into both Debezium plugin dirs: the converter, the TOAST
# reselector and the source transforms load through the PostgreSQL connector's class loader, the truncate
# inspector and the large-value JSON converter through the JDBC sink's. The same build's second jar is the worker's
# client override policy (connect-distributed.properties), in a plugin dir of its own under plugin.path, as
# scripts/install.sh places it on the local stack.
COPY include/converters/pom.xml converters/pom.xml
COPY include/converters/src converters/src
RUN --mount=type=cache,target=/root/.m2 \
    mvn -B -f converters/pom.xml package \
 && cp converters/target/pgmigration-converters.jar /stack/lib/connect-plugins/debezium-connector-postgres/ \
 && cp converters/target/pgmigration-converters.jar /stack/lib/connect-plugins/debezium-connector-jdbc/ \
 && mkdir -p /stack/lib/connect-plugins/pgmigration-override-policy \
 && cp converters/target/pgmigration-converters-override-policy.jar \
       /stack/lib/connect-plugins/pgmigration-override-policy/pgmigration-override-policy.jar

FROM apache/kafka:${KAFKA_VERSION}
ARG DEBEZIUM_SOURCE_VERSION
ARG DEBEZIUM_SINK_VERSION
LABEL org.opencontainers.image.title="pgmigration-connect" \
      io.debezium.source.version="${DEBEZIUM_SOURCE_VERSION}" \
      io.debezium.sink.version="${DEBEZIUM_SINK_VERSION}"
USER root
# curl: the compose healthcheck queries the REST API (the base image ships neither curl nor wget).
RUN apk add --no-cache curl \
 && mkdir -p /opt/connect /opt/secrets
COPY --from=plugins /stack/lib/connect-plugins /opt/connect-plugins
# The worker's properties are a template (bootstrap servers, replication, advertised host differ per worker and
# profile); connect-run.sh renders it from the environment and starts the worker.
COPY include/docker/connect-distributed.properties /opt/connect/connect-distributed.properties
COPY --chmod=0755 include/docker/connect-run.sh /opt/connect/connect-run.sh
USER appuser
EXPOSE 8083
CMD ["/opt/connect/connect-run.sh"]
