package local.pgmigration.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Only the sink's own truncate statement changes; names with quotes stay quoted. */
class TruncateStatementInspectorTest {

    private final TruncateStatementInspector inspector = new TruncateStatementInspector();

    @Test
    void otherStatementsPassUnchanged() {
        String upsert = "INSERT INTO \"public\".\"t\" (\"id\") VALUES (?) ON CONFLICT (\"id\") DO UPDATE SET \"id\"=EXCLUDED.\"id\"";
        assertEquals(upsert, inspector.inspect(upsert));
        assertEquals("TRUNCATE TABLE t", inspector.inspect("TRUNCATE TABLE t"));
    }

    @Test
    void truncateBecomesDeleteWhenReferenced() {
        String sql = inspector.inspect("TRUNCATE TABLE \"sales\".\"Order \"\"Items\"\" l'été\"");
        assertTrue(sql.startsWith("DO $pgmigrate_truncate$ BEGIN LOCK TABLE \"sales\".\"Order \"\"Items\"\" l'été\" IN ACCESS EXCLUSIVE MODE; IF EXISTS"), sql);
        assertTrue(sql.contains("confrelid = '\"sales\".\"Order \"\"Items\"\" l''été\"'::regclass OR"), sql);
        assertTrue(sql.contains("pg_partition_tree('\"sales\".\"Order \"\"Items\"\" l''été\"'::regclass)"), sql);
        assertTrue(sql.contains("THEN DELETE FROM \"sales\".\"Order \"\"Items\"\" l'été\"; ELSE TRUNCATE TABLE "), sql);
    }
}
