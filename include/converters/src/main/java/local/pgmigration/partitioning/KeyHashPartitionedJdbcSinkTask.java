package local.pgmigration.partitioning;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.errors.RetriableException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.debezium.connector.jdbc.JdbcSinkConnectorTask;

/**
 * Debezium's JDBC sink task, for change topics spread by key hash: one task per partition, side by side.
 *
 * <p>A spread table's TRUNCATE reaches every partition at the source's point in it; this task's copy empties only the
 * rows whose key hashes to its partition: every change of those rows is in this partition, so the DELETE stands
 * exactly where the TRUNCATE stood for them, whatever the other tasks have applied of theirs. What precedes it in the
 * batch is written first, what follows after. Under the sink's {@code session_replication_role=replica} no trigger
 * fires, as for the sink's own statements.
 *
 * <p>A primary-key change is a delete in the old key's partition and an insert in the new key's: when a unique column
 * keeps its value, the insert can reach the target before the other task's delete and fail on the unique index. That
 * is retried (Connect delivers the same batch again, a quarter second later) for a minute, then the task fails naming
 * the constraint. Debezium's own flush retries cover only lost connections.
 *
 * <p>Debezium's task does the writing; a conflict replaces it with a fresh one (its buffers and its failure are the
 * failed batch's). Its offsets are committed, and past each TRUNCATE carried out here (it never saw those records).
 */
public class KeyHashPartitionedJdbcSinkTask extends SinkTask {

    private static final Logger LOGGER = LoggerFactory.getLogger(KeyHashPartitionedJdbcSinkTask.class);

    static final int MAX_CONFLICT_RETRIES = 240;
    private static final long CONFLICT_RETRY_DELAY_MS = 250;
    private static final String UNIQUE_VIOLATION = "23505";

    private KeyHashPartitioning partitioning;
    private String url;
    private Properties credentials;
    private Connection connection;
    private int conflictRetries;
    private Map<String, String> props;
    private JdbcSinkConnectorTask writer;
    /** Past each TRUNCATE carried out here: the writer never saw it, so its offsets do not cover it. */
    private final Map<TopicPartition, Long> truncatedUpTo = new HashMap<>();
    /** What Connect assigned, for a fresh writer (its commits cover the partitions it was opened with). */
    private final Set<TopicPartition> assigned = new LinkedHashSet<>();

    @Override
    public String version() {
        return new JdbcSinkConnectorTask().version();
    }

    @Override
    public void start(Map<String, String> props) {
        this.props = props;
        partitioning = KeyHashPartitioning.parse(props.get(KeyHashPartitioning.CONFIG));
        url = props.get("connection.url");
        credentials = new Properties();
        credentials.setProperty("user", props.getOrDefault("connection.username", ""));
        credentials.setProperty("password", props.getOrDefault("connection.password", ""));
        writer = startWriter();
    }

    private JdbcSinkConnectorTask startWriter() {
        JdbcSinkConnectorTask task = new JdbcSinkConnectorTask();
        task.initialize(context);
        task.start(props);
        if (!assigned.isEmpty()) {
            task.open(new ArrayList<>(assigned));
        }
        return task;
    }

    @Override
    public void put(Collection<SinkRecord> records) {
        try {
            write(records);
            conflictRetries = 0;
        }
        catch (RuntimeException e) {
            SQLException unique = uniqueViolation(e);
            if (unique == null) {
                throw e instanceof ConnectException connect ? connect : new ConnectException(e);
            }
            String conflict = describeConflict(unique);
            if (conflictRetries >= MAX_CONFLICT_RETRIES) {
                throw new ConnectException("a write still violates " + conflict + " after a minute of retries, so no "
                        + "change of another partition is going to free the value. Fix the row on the target (or resync "
                        + "its table), then restart the sink.", e);
            }
            conflictRetries++;
            writer.stop();
            writer = startWriter();
            LOGGER.warn("a write waits for a change of another partition to free a value of {} (retry {}/{})", conflict,
                    conflictRetries, MAX_CONFLICT_RETRIES);
            context.timeout(CONFLICT_RETRY_DELAY_MS);
            throw new RetriableException("waiting for another partition to free a value of " + conflict);
        }
    }

    @Override
    public void open(Collection<TopicPartition> partitions) {
        assigned.addAll(partitions);
        writer.open(partitions);
    }

    @Override
    public void close(Collection<TopicPartition> partitions) {
        writer.close(partitions);
        assigned.removeAll(partitions);
        partitions.forEach(truncatedUpTo::remove);
    }

    @Override
    public Map<TopicPartition, OffsetAndMetadata> preCommit(Map<TopicPartition, OffsetAndMetadata> currentOffsets) {
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>(writer.preCommit(currentOffsets));
        truncatedUpTo.forEach((partition, next) -> {
            OffsetAndMetadata committed = offsets.get(partition);
            if (committed == null || committed.offset() < next) {
                offsets.put(partition, new OffsetAndMetadata(next));
            }
        });
        return offsets;
    }

    @Override
    public void stop() {
        try {
            if (writer != null) {
                writer.stop();
            }
        }
        finally {
            closeConnection();
        }
    }

    private void write(Collection<SinkRecord> records) {
        List<SinkRecord> pending = new ArrayList<>(records.size());
        for (SinkRecord record : records) {
            List<String> key = spreadTruncateKey(record);
            if (key == null) {
                pending.add(record);
                continue;
            }
            writePending(pending);
            deletePartitionRows(record, key);
        }
        writePending(pending);
    }

    /** Debezium's task keeps a write's failure for its next put: surface it now, before anything after it. */
    private void writePending(List<SinkRecord> pending) {
        if (pending.isEmpty()) {
            return;
        }
        writer.put(new ArrayList<>(pending));
        pending.clear();
        Throwable failure = writer.getLastProcessingException();
        if (failure != null) {
            throw failure instanceof ConnectException connect ? connect : new ConnectException(failure);
        }
    }

    /** The key columns of a spread table, for a TRUNCATE of it; null for any other record. */
    private List<String> spreadTruncateKey(SinkRecord record) {
        if (!(record.value() instanceof Struct value) || value.schema().field("op") == null
                || !"t".equals(value.getString("op")) || value.schema().field("source") == null) {
            return null;
        }
        Struct source = value.getStruct("source");
        return partitioning.keyColumns(source.getString("schema"), source.getString("table"));
    }

    private void deletePartitionRows(SinkRecord record, List<String> key) {
        Struct source = ((Struct) record.value()).getStruct("source");
        String table = KeyHashPartitioning.quote(source.getString("schema")) + "." + KeyHashPartitioning.quote(source.getString("table"));
        int partition = record.originalKafkaPartition();
        String delete = "DELETE FROM " + table + " WHERE " + KeyHashPartitioning.partitionSql(key, partitioning.partitions())
                + " = " + partition;
        try {
            Connection conn = connection();
            try (Statement statement = conn.createStatement()) {
                int rows = statement.executeUpdate(delete);
                conn.commit();
                LOGGER.info("TRUNCATE of {} carried out for partition {} of {}: {} rows deleted", table, partition,
                        record.originalTopic(), rows);
            }
        }
        catch (SQLException e) {
            closeConnection();
            throw new ConnectException("could not carry out the TRUNCATE of " + table + " for partition " + partition
                    + " of " + record.originalTopic() + ": " + e.getMessage(), e);
        }
        truncatedUpTo.put(new TopicPartition(record.originalTopic(), partition), record.originalKafkaOffset() + 1);
    }

    /** The constraint and table, never the values (they may be personal data). */
    static String describeConflict(SQLException unique) {
        if (unique instanceof org.postgresql.util.PSQLException psql && psql.getServerErrorMessage() != null
                && psql.getServerErrorMessage().getConstraint() != null) {
            return "unique constraint " + KeyHashPartitioning.quote(psql.getServerErrorMessage().getConstraint())
                    + " of table " + KeyHashPartitioning.quote(String.valueOf(psql.getServerErrorMessage().getTable()));
        }
        return "a unique constraint";
    }

    /** The unique violation somewhere in a write's chain of causes (the server's own error, innermost), or null. */
    static SQLException uniqueViolation(Throwable failure) {
        for (Throwable cause = failure; cause != null; cause = cause.getCause()) {
            if (cause instanceof SQLException sql) {
                SQLException found = null;
                for (SQLException next = sql; next != null; next = next.getNextException()) {
                    if (UNIQUE_VIOLATION.equals(next.getSQLState())) {
                        found = next;
                    }
                }
                if (found != null) {
                    return found;
                }
            }
            if (cause.getCause() == cause) {
                break;
            }
        }
        return null;
    }

    private Connection connection() throws SQLException {
        if (connection == null || connection.isClosed()) {
            connection = new org.postgresql.Driver().connect(url, credentials);
            if (connection == null) {
                throw new SQLException("the PostgreSQL driver does not take the sink's connection.url");
            }
            connection.setAutoCommit(false);
        }
        return connection;
    }

    private void closeConnection() {
        if (connection != null) {
            try {
                connection.close();
            }
            catch (SQLException e) {
                LOGGER.warn("closing the TRUNCATE connection: {}", e.getMessage());
            }
            connection = null;
        }
    }
}
