package local.pgmigration.partitioning;

import org.apache.kafka.connect.connector.Task;

import io.debezium.connector.postgresql.PostgresConnector;

/** Debezium's PostgreSQL source whose task spreads each table's changes by key hash ({@link KeyHashPartitioning}). */
public class KeyHashPartitionedPostgresConnector extends PostgresConnector {

    @Override
    public Class<? extends Task> taskClass() {
        return KeyHashPartitionedPostgresConnectorTask.class;
    }
}
