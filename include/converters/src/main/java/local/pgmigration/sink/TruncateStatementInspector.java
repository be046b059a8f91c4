package local.pgmigration.sink;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.hibernate.resource.jdbc.spi.StatementInspector;

/**
 * Makes the JDBC sink's TRUNCATE of a table that a foreign key references succeed, as a DELETE.
 *
 * <p>A TRUNCATE on the source truncates a referenced table together with the tables referencing it, but Debezium
 * emits one truncate event per table, each on its own topic, and the sink runs {@code TRUNCATE TABLE t} for each
 * alone: PostgreSQL refuses that for a table any foreign key references ("cannot truncate a table referenced in a
 * foreign key constraint"), whatever {@code session_replication_role}, and the sink FAILs. CASCADE would be wrong: it
 * would also empty the referencing table at this point of the referenced table's stream, losing rows the other
 * topic has already applied after the source's TRUNCATE. A DELETE empties exactly this table at exactly this point;
 * under the sink's {@code session_replication_role=replica} the foreign-key triggers do not fire, and the
 * referencing table's own truncate event empties it at its own point, as on the source. Tables no foreign key
 * references keep the fast TRUNCATE.
 *
 * <p>Sink config: {@code hibernate.session_factory.statement_inspector=local.pgmigration.sink.TruncateStatementInspector}.
 * Hibernate passes every statement the sink prepares through it; only the sink's truncate statement is changed.
 */
public class TruncateStatementInspector implements StatementInspector {

    private static final long serialVersionUID = 1L;

    /** What the sink's PostgreSQL dialect writes (GeneralDatabaseDialect.getTruncateStatement), table quoted. */
    private static final Pattern SINK_TRUNCATE = Pattern.compile("TRUNCATE TABLE (\"(?:[^\"]|\"\")+\"\\.\"(?:[^\"]|\"\")+\")");

    private static final String DELIMITER = "$pgmigrate_truncate$";

    @Override
    public String inspect(String sql) {
        Matcher matcher = SINK_TRUNCATE.matcher(sql);
        if (!matcher.matches()) {
            return sql;
        }
        String table = matcher.group(1);
        if (table.contains(DELIMITER)) {
            return sql; // cannot be quoted inside the block: the plain TRUNCATE fails loudly if it must
        }
        return truncateOrDelete(table);
    }

    /**
     * One statement: DELETE if a foreign key references the table or one of its partitions, else TRUNCATE. The
     * table is locked first (TRUNCATE's own ACCESS EXCLUSIVE): apply_post_data adds foreign keys while the sink
     * streams, and one committed between the check and the TRUNCATE would fail it; ADD FOREIGN KEY needs a lock on
     * the referenced table that conflicts with this one, and the check after it reads the catalog afresh.
     */
    static String truncateOrDelete(String quotedTable) {
        String literal = "'" + quotedTable.replace("'", "''") + "'";
        // pg_partition_tree() returns no rows for a table that is not partitioned: the table itself is checked too.
        return "DO " + DELIMITER + " BEGIN LOCK TABLE " + quotedTable + " IN ACCESS EXCLUSIVE MODE; IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE contype = 'f' "
                + "AND (confrelid = " + literal + "::regclass OR confrelid IN (SELECT relid FROM "
                + "pg_catalog.pg_partition_tree(" + literal + "::regclass)))) THEN DELETE FROM " + quotedTable + "; ELSE TRUNCATE TABLE " + quotedTable + "; END IF; END "
                + DELIMITER;
    }
}
