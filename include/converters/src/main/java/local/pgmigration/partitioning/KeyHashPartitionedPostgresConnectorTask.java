package local.pgmigration.partitioning;

import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.source.SourceRecord;

import io.debezium.config.Configuration;
import io.debezium.connector.postgresql.PostgresConnectorTask;
import io.debezium.connector.postgresql.PostgresOffsetContext;
import io.debezium.connector.postgresql.PostgresPartition;
import io.debezium.pipeline.ChangeEventSourceCoordinator;

/**
 * Debezium's PostgreSQL task, with every change record given its partition before Connect sends it: a spread table's
 * changes by key hash, its TRUNCATE once to every partition (so each sink task empties its own share at that point of
 * its partition), every other table's changes to partition 0. Records that are not a table's change (Debezium's
 * heartbeat topic) keep Kafka's own choice.
 */
public class KeyHashPartitionedPostgresConnectorTask extends PostgresConnectorTask {

    private KeyHashPartitioning partitioning;

    @Override
    public ChangeEventSourceCoordinator<PostgresPartition, PostgresOffsetContext> start(Configuration config) {
        partitioning = KeyHashPartitioning.parse(config.getString(KeyHashPartitioning.CONFIG));
        return super.start(config);
    }

    @Override
    public List<SourceRecord> doPoll() throws InterruptedException {
        return partitioned(super.doPoll(), partitioning);
    }

    static List<SourceRecord> partitioned(List<SourceRecord> records, KeyHashPartitioning partitioning) {
        if (records == null || records.isEmpty()) {
            return records;
        }
        List<SourceRecord> out = new ArrayList<>(records.size());
        for (SourceRecord record : records) {
            addPartitioned(record, partitioning, out);
        }
        return out;
    }

    private static void addPartitioned(SourceRecord record, KeyHashPartitioning partitioning, List<SourceRecord> out) {
        Struct source = sourceOf(record);
        if (source == null) {
            out.add(record);
            return;
        }
        String schema = source.getString("schema");
        String table = source.getString("table");
        List<String> key = partitioning.keyColumns(schema, table);
        boolean truncate = "t".equals(((Struct) record.value()).getString("op"));
        if (key == null) {
            out.add(withPartition(record, 0));
        }
        else if (truncate) {
            for (int partition = 0; partition < partitioning.partitions(); partition++) {
                out.add(withPartition(record, partition));
            }
        }
        else {
            out.add(withPartition(record, partitioning.partitionOf(schema, table, key, (Struct) record.key())));
        }
    }

    /** The change's `source` block, or null for a record that is not a table's change. */
    static Struct sourceOf(SourceRecord record) {
        if (!(record.value() instanceof Struct value) || value.schema().field("source") == null
                || value.schema().field("op") == null) {
            return null;
        }
        Struct source = value.getStruct("source");
        if (source == null || source.schema().field("schema") == null || source.schema().field("table") == null) {
            return null;
        }
        return source;
    }

    static SourceRecord withPartition(SourceRecord record, int partition) {
        return record.newRecord(record.topic(), partition, record.keySchema(), record.key(), record.valueSchema(),
                record.value(), record.timestamp(), record.headers().duplicate());
    }
}
