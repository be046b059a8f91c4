package local.pgmigration.partitioning;

import org.apache.kafka.connect.connector.Task;

import io.debezium.connector.jdbc.JdbcSinkConnector;

/** Debezium's JDBC sink whose tasks carry out a spread table's TRUNCATE partition by partition ({@link KeyHashPartitioning}). */
public class KeyHashPartitionedJdbcSinkConnector extends JdbcSinkConnector {

    @Override
    public Class<? extends Task> taskClass() {
        return KeyHashPartitionedJdbcSinkTask.class;
    }
}
