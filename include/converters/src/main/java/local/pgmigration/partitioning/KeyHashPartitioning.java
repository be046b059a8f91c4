package local.pgmigration.partitioning;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.ConnectException;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * How a migration spreads each table's changes over the partitions of its change topic, shared by the source (which
 * picks the partition) and the sink (which empties one partition's rows on a TRUNCATE).
 *
 * <p>A table listed here goes by a hash of its primary key: every change of one row lands in one partition, in
 * order, so several sink tasks apply a table in parallel and each row still ends as on the source. The hash is one
 * PostgreSQL computes from the row itself ({@link #partitionSql}): the sink can then carry out a TRUNCATE partition by
 * partition, at its exact place in each partition, with no coordination between tasks. The platform lists only
 * tables whose key columns are smallint, integer, bigint, text, varchar or uuid, whose value here and whose
 * {@code ::text} there are the same characters. Every other table (and the pipeline's own tables) stays in
 * partition 0, in order, with its TRUNCATE there.
 *
 * <p>Config key {@value #CONFIG}, the same JSON on both connectors:
 * {@code {"partitions": 4, "tables": [{"schema": "public", "table": "orders", "key": ["id"]}]}}.
 */
public final class KeyHashPartitioning {

    public static final String CONFIG = "pgmigrate.partitioning";

    /** Between the key columns' texts: a character no key value of these types is expected to hold. */
    static final String KEY_SEPARATOR = "\u001f";

    private final int partitions;
    private final Map<List<String>, List<String>> keysByTable;

    KeyHashPartitioning(int partitions, Map<List<String>, List<String>> keysByTable) {
        this.partitions = partitions;
        this.keysByTable = keysByTable;
    }

    public static KeyHashPartitioning parse(String json) {
        if (json == null || json.isBlank()) {
            throw new ConfigException(CONFIG, json, "is required by the key-hash partitioned connectors");
        }
        try {
            JsonNode root = new ObjectMapper().readTree(json);
            int partitions = root.path("partitions").asInt(0);
            if (partitions < 1) {
                throw new ConfigException(CONFIG, json, "needs \"partitions\" of at least 1");
            }
            Map<List<String>, List<String>> keys = new HashMap<>();
            for (JsonNode table : root.path("tables")) {
                List<String> key = new ArrayList<>();
                table.path("key").forEach(column -> key.add(column.asText()));
                if (key.isEmpty()) {
                    throw new ConfigException(CONFIG, json, "lists a table without key columns");
                }
                keys.put(List.of(table.path("schema").asText(), table.path("table").asText()), List.copyOf(key));
            }
            return new KeyHashPartitioning(partitions, keys);
        }
        catch (java.io.IOException e) {
            throw new ConfigException(CONFIG, json, "is not JSON: " + e.getMessage());
        }
    }

    public int partitions() {
        return partitions;
    }

    /** The key columns of a table spread by hash, or null for a table kept in partition 0. */
    public List<String> keyColumns(String schema, String table) {
        if (schema == null || table == null) {
            return null; // not a table's change (a logical decoding message, for one)
        }
        return keysByTable.get(List.of(schema, table));
    }

    /** The partition of a change of a spread table, from its Kafka record key (one field per key column). */
    public int partitionOf(String schema, String table, List<String> keyColumns, Struct key) {
        if (key == null) {
            throw new ConnectException("a change of " + schema + "." + table + " has no key: it cannot be spread by key hash");
        }
        List<String> texts = new ArrayList<>(keyColumns.size());
        for (String column : keyColumns) {
            Object value = key.get(column);
            if (!(value instanceof String || value instanceof Short || value instanceof Integer || value instanceof Long)) {
                throw new ConnectException("key column " + column + " of " + schema + "." + table + " holds a "
                        + (value == null ? "null" : value.getClass().getSimpleName())
                        + ": only integer, text and uuid keys are spread by hash; deploy with change_topic_partitions=1");
            }
            texts.add(value.toString());
        }
        return partitionOfKeyText(String.join(KEY_SEPARATOR, texts), partitions);
    }

    /** The first four bytes of the md5 of the key's text, unsigned, modulo the partition count. */
    static int partitionOfKeyText(String keyText, int partitions) {
        byte[] digest;
        try {
            digest = MessageDigest.getInstance("MD5").digest(keyText.getBytes(StandardCharsets.UTF_8));
        }
        catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JVM has MD5", e);
        }
        long first = ((digest[0] & 0xffL) << 24) | ((digest[1] & 0xffL) << 16) | ((digest[2] & 0xffL) << 8) | (digest[3] & 0xffL);
        return (int) (first % partitions);
    }

    /** The same partition, in SQL over the row's own columns (quoted identifiers). */
    static String partitionSql(List<String> keyColumns, int partitions) {
        List<String> texts = new ArrayList<>();
        for (String column : keyColumns) {
            texts.add(quote(column) + "::text");
        }
        return "(('x' || substr(md5(concat_ws(chr(31), " + String.join(", ", texts) + ")), 1, 8))::bit(32)::bigint % "
                + partitions + ")";
    }

    static String quote(String identifier) {
        return "\"" + identifier.replace("\"", "\"\"") + "\"";
    }
}
