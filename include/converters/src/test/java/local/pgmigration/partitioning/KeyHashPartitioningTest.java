package local.pgmigration.partitioning;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;

import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.source.SourceRecord;
import org.junit.jupiter.api.Test;

/** Unit tests (no Connect worker): the hash matches PostgreSQL's, and the source task's partition choice. */
class KeyHashPartitioningTest {

    private static final KeyHashPartitioning PARTITIONING = KeyHashPartitioning.parse(
            "{\"partitions\": 4, \"tables\": [{\"schema\": \"public\", \"table\": \"orders\", \"key\": [\"id\"]},"
                    + " {\"schema\": \"Ventes\", \"table\": \"Lignes\", \"key\": [\"n\", \"Réf\"]}]}");

    private static final Schema SOURCE = SchemaBuilder.struct().field("schema", Schema.OPTIONAL_STRING_SCHEMA)
            .field("table", Schema.OPTIONAL_STRING_SCHEMA).build();
    private static final Schema KEY = SchemaBuilder.struct().field("id", Schema.INT64_SCHEMA).build();
    private static final Schema VALUE = SchemaBuilder.struct().field("op", Schema.STRING_SCHEMA).field("source", SOURCE)
            .build();

    @Test
    void theHashIsTheOnePostgresqlComputes() {
        // select (('x' || substr(md5('42'), 1, 8))::bit(32)::bigint) -> 2714814184, % 4 -> 0
        assertEquals(0, KeyHashPartitioning.partitionOfKeyText("42", 4));
        assertEquals((int) (2714814184L % 7), KeyHashPartitioning.partitionOfKeyText("42", 7));
        // select ('x' || substr(md5(concat_ws(chr(31), 7::text, 'Été'::text)), 1, 8))::bit(32)::bigint -> 184739362
        assertEquals((int) (184739362L % 5), KeyHashPartitioning.partitionOfKeyText("7\u001fÉté", 5));
        assertEquals("((\'x\' || substr(md5(concat_ws(chr(31), \"n\"::text, \"Ré\"\"f\"::text)), 1, 8))::bit(32)::bigint % 4)",
                KeyHashPartitioning.partitionSql(List.of("n", "Ré\"f"), 4));
    }

    @Test
    void aCompositeKeyIsHashedInTheListedOrder() {
        Schema key = SchemaBuilder.struct().field("Réf", Schema.STRING_SCHEMA).field("n", Schema.INT32_SCHEMA).build();
        Struct value = new Struct(key).put("Réf", "Été").put("n", 7);
        assertEquals((int) (184739362L % 4), PARTITIONING.partitionOf("Ventes", "Lignes", List.of("n", "Réf"), value));
    }

    @Test
    void changesGoByKeyTruncatesToEveryPartitionOtherTablesToPartitionZero() {
        List<SourceRecord> out = KeyHashPartitionedPostgresConnectorTask.partitioned(List.of(
                change("public", "orders", "c", 42L),
                change("public", "orders", "t", null),
                change("public", "unlisted", "u", 42L),
                change("public", "unlisted", "t", null),
                change(null, null, "m", null)), PARTITIONING);
        assertEquals(List.of(0, 0, 1, 2, 3, 0, 0, 0), out.stream().map(SourceRecord::kafkaPartition).toList());
        assertEquals(List.of("c", "t", "t", "t", "t", "u", "t", "m"),
                out.stream().map(r -> ((Struct) r.value()).getString("op")).toList());
    }

    @Test
    void aRecordThatIsNotAChangeKeepsKafkasChoice() {
        SourceRecord heartbeat = new SourceRecord(null, null, "__debezium-heartbeat.x", null, null, null,
                SchemaBuilder.struct().field("ts_ms", Schema.INT64_SCHEMA).build(),
                new Struct(SchemaBuilder.struct().field("ts_ms", Schema.INT64_SCHEMA).build()).put("ts_ms", 1L));
        assertNull(KeyHashPartitionedPostgresConnectorTask.partitioned(List.of(heartbeat), PARTITIONING).get(0)
                .kafkaPartition());
    }

    @Test
    void aMissingOrBrokenConfigIsRefusedByName() {
        assertThrows(ConfigException.class, () -> KeyHashPartitioning.parse(null));
        assertThrows(ConfigException.class, () -> KeyHashPartitioning.parse("{\"partitions\": 0, \"tables\": []}"));
        assertThrows(ConfigException.class, () -> KeyHashPartitioning.parse("not json"));
    }

    @Test
    void aUniqueViolationIsFoundInsideTheSinksWrappedBatchFailure() {
        java.sql.SQLException unique = new java.sql.SQLException("duplicate key value", "23505");
        java.sql.BatchUpdateException batch = new java.sql.BatchUpdateException("Batch entry 0 (values)", "23505", 0, new int[0]);
        batch.setNextException(unique);
        RuntimeException wrapped = new org.apache.kafka.connect.errors.ConnectException("flush", new RuntimeException(batch));
        assertEquals(unique, KeyHashPartitionedJdbcSinkTask.uniqueViolation(wrapped));
        assertNull(KeyHashPartitionedJdbcSinkTask.uniqueViolation(
                new RuntimeException(new java.sql.SQLException("connection lost", "08006"))));
        assertEquals("a unique constraint", KeyHashPartitionedJdbcSinkTask.describeConflict(unique));
    }

    private static SourceRecord change(String schema, String table, String op, Long id) {
        Struct value = new Struct(VALUE).put("op", op).put("source", new Struct(SOURCE).put("schema", schema).put("table", table));
        Struct key = id == null ? null : new Struct(KEY).put("id", id);
        return new SourceRecord(null, null, "t", null, key == null ? null : KEY, key, VALUE, value);
    }
}
