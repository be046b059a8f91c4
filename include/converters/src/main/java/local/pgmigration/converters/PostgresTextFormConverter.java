package local.pgmigration.converters;

import java.sql.Types;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.function.Function;

import org.apache.kafka.connect.data.SchemaBuilder;

import io.debezium.connector.postgresql.UnchangedToastedReplicationMessageColumn;
import io.debezium.spi.converter.CustomConverter;
import io.debezium.spi.converter.RelationalColumn;

/**
 * Carries the PostgreSQL types that Debezium 3.6 + the JSON converter + the JDBC sink alter when streamed
 * (float NaN/±Infinity/-0, numeric ±Infinity, infinity and BC dates/timestamps, time 24:00:00, point (a PostGIS geometry to Debezium), bit/varbit widths, hstore,
 * enum/numeric/multi-dimensional arrays) as an optional STRING in PostgreSQL's own text form. The sink's
 * connection has {@code stringtype=unspecified}, so PostgreSQL parses that text into the target column's real
 * type: the value arrives exactly as the source had it.
 *
 * <p>The schema is named {@code STRING}. The JDBC sink resolves a field's binding by schema name first, then by
 * the propagated {@code __debezium.source.column.type}: for BIT/VARBIT columns that would pick its BitType, which
 * expects bytes and a length. The name resolves to its plain string type instead (bound as an untyped text
 * parameter, no cast), for every converted column alike; the propagated source-type parameters stay as they are.
 *
 * <p>An UPDATE that leaves an out-of-line (TOASTed) value unchanged hands over Debezium's "unchanged TOAST" marker
 * object instead of the value. It becomes the connector's {@code unchanged.toast.value.placeholder} string, as
 * Debezium's own converters do, so {@link ToastReselector} reads the real value back from the source.
 *
 * <p>Connector config: {@code converters=pgtext},
 * {@code pgtext.type=local.pgmigration.converters.PostgresTextFormConverter}, and
 * {@code pgtext.unavailable.value.placeholder} = the connector's {@code unchanged.toast.value.placeholder}.
 */
public class PostgresTextFormConverter implements CustomConverter<SchemaBuilder, RelationalColumn> {

    /** The schema name the JDBC sink's type registry maps to its plain string binding (ConnectStringType). */
    public static final String SCHEMA_NAME = "STRING";

    private static final Map<String, Function<Object, String>> SCALARS = Map.ofEntries(
            Map.entry("float4", PostgresText::floating),
            Map.entry("float8", PostgresText::floating),
            Map.entry("numeric", PostgresText::numeric),
            Map.entry("date", PostgresText::date),
            Map.entry("timestamp", PostgresText::timestamp),
            Map.entry("timestamptz", PostgresText::timestampWithZone),
            Map.entry("time", PostgresText::timeOfDay),
            Map.entry("point", PostgresText::point),
            Map.entry("timetz", PostgresText::timeWithZone),
            Map.entry("bit", PostgresText::bits),
            Map.entry("varbit", PostgresText::bits),
            Map.entry("hstore", PostgresText::hstore));

    private String unavailableValuePlaceholder = UnavailableValues.DEFAULT_PLACEHOLDER;

    @Override
    public void configure(Properties props) {
        unavailableValuePlaceholder = props.getProperty("unavailable.value.placeholder", UnavailableValues.DEFAULT_PLACEHOLDER);
    }

    @Override
    public void converterFor(RelationalColumn column, ConverterRegistration<SchemaBuilder> registration) {
        Function<Object, String> format = formatFor(column.jdbcType(), column.typeName());
        if (format == null) {
            return;
        }
        Object defaultValue = column.defaultValue();
        // Optional even for NOT NULL columns: the before image of an UPDATE or DELETE under REPLICA IDENTITY DEFAULT
        // carries null in every non-key column (Debezium's own converters substitute a fallback there).
        registration.register(SchemaBuilder.string().name(SCHEMA_NAME).optional(), value -> {
            if (value == null) {
                return null;
            }
            if (UnchangedToastedReplicationMessageColumn.isUnchangedToastedValue(value)) {
                return unavailableValuePlaceholder;
            }
            try {
                return format.apply(value);
            }
            catch (IllegalArgumentException e) {
                // Debezium also passes the column's parsed default through here, already converted to its
                // default schema's value (e.g. epoch days for a date). The sink never reads schema defaults
                // (the target's DDL comes from pg_dump), so that one value may be approximate; data may not.
                if (Objects.equals(value, defaultValue)) {
                    return value.toString();
                }
                throw new IllegalArgumentException(e.getMessage() + " (column " + column.dataCollection() + "."
                        + column.name() + " " + column.typeName() + ")", e);
            }
        });
    }

    /** The formatter for a column, or null to leave the column to Debezium's own conversion. */
    static Function<Object, String> formatFor(int jdbcType, String typeName) {
        if (jdbcType == Types.ARRAY) {
            return PostgresText::array;
        }
        return SCALARS.get(typeName);
    }
}
