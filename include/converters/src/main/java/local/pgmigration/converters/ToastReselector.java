package local.pgmigration.converters;

import java.nio.ByteBuffer;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Struct;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.debezium.DebeziumException;
import io.debezium.bean.StandardBeanNames;
import io.debezium.bean.spi.BeanRegistry;
import io.debezium.bean.spi.BeanRegistryAware;
import io.debezium.connector.AbstractSourceInfo;
import io.debezium.data.Envelope;
import io.debezium.jdbc.JdbcConnection;
import io.debezium.processors.spi.PostProcessor;
import io.debezium.relational.Column;
import io.debezium.relational.CustomConverterRegistry;
import io.debezium.relational.RelationalDatabaseConnectorConfig;
import io.debezium.relational.RelationalDatabaseSchema;
import io.debezium.relational.Table;
import io.debezium.relational.TableId;
import io.debezium.relational.ValueConverter;
import io.debezium.relational.ValueConverterProvider;
import io.debezium.service.spi.ServiceRegistry;
import io.debezium.service.spi.ServiceRegistryAware;

/**
 * Refills the TOASTed columns an UPDATE did not change (they arrive as the unavailable-value placeholder) by reading
 * them back from the source by the event's key, before the event reaches Kafka.
 *
 * <p>It replaces Debezium 3.6's ReselectColumnsPostProcessor, which writes the key columns into its SELECT unquoted
 * (a key named {@code "Id"} or {@code "order"} fails) and, when the re-select fails, only logs a warning and sends
 * the placeholder on, which the JDBC sink then writes as data. Here a failed re-select never reaches Kafka:
 * <ul>
 *   <li>a database error (source restart, timeout, permissions) fails the event with the SQLException as cause, which
 *   the PostgreSQL connector treats as retriable: it restarts from its last committed position and re-selects
 *   again;</li>
 *   <li>no row for the key means the row was deleted (or its key changed) after this change was written: a later
 *   event of the stream removes it from the target. The event keeps its placeholders and
 *   {@link DropVanishedRowUpdates} drops it, so the target goes from the row's previous state to its deletion.</li>
 * </ul>
 * The re-selected value is the row's current one, possibly newer than the event; the later events of the stream
 * bring the target to the same state as the source (Debezium's reselect semantics).
 *
 * <p>Connector config: {@code post.processors=toastReselector},
 * {@code post.processors.toastReselector.type=local.pgmigration.converters.ToastReselector}; the placeholder is the
 * connector's {@code unchanged.toast.value.placeholder}.
 */
public class ToastReselector implements PostProcessor, BeanRegistryAware, ServiceRegistryAware {

    private static final Logger LOGGER = LoggerFactory.getLogger(ToastReselector.class);

    private JdbcConnection jdbcConnection;
    private RelationalDatabaseSchema schema;
    private RelationalDatabaseConnectorConfig connectorConfig;
    private ValueConverterProvider valueConverterProvider;
    private CustomConverterRegistry customConverterRegistry;
    private UnavailableValues unavailable;

    @Override
    public void configure(Map<String, ?> properties) {
    }

    @Override
    public void injectBeanRegistry(BeanRegistry beanRegistry) {
        connectorConfig = beanRegistry.lookupByName(StandardBeanNames.CONNECTOR_CONFIG, RelationalDatabaseConnectorConfig.class);
        unavailable = new UnavailableValues(new String(connectorConfig.getUnavailableValuePlaceholder(),
                java.nio.charset.StandardCharsets.UTF_8));
        valueConverterProvider = beanRegistry.lookupByName(StandardBeanNames.VALUE_CONVERTER, ValueConverterProvider.class);
        jdbcConnection = beanRegistry.lookupByName(StandardBeanNames.JDBC_CONNECTION, JdbcConnection.class);
        schema = beanRegistry.lookupByName(StandardBeanNames.DATABASE_SCHEMA, RelationalDatabaseSchema.class);
    }

    @Override
    public void injectServiceRegistry(ServiceRegistry serviceRegistry) {
        customConverterRegistry = serviceRegistry.tryGetService(CustomConverterRegistry.class);
    }

    @Override
    public void apply(Object messageKey, Struct value) {
        if (value == null || !(messageKey instanceof Struct key) || value.schema().field(Envelope.FieldName.AFTER) == null) {
            return;
        }
        Struct after = value.getStruct(Envelope.FieldName.AFTER);
        // Snapshot reads are plain SELECTs: they always hold the whole row.
        if (after == null || Envelope.Operation.READ.code().equals(value.getString(Envelope.FieldName.OPERATION))) {
            return;
        }
        List<String> columns = unavailable.fieldsHoldingPlaceholder(after);
        if (columns.isEmpty()) {
            return;
        }
        Struct source = value.getStruct(Envelope.FieldName.SOURCE);
        TableId tableId = jdbcConnection.createTableId(source.getString(AbstractSourceInfo.DATABASE_NAME_KEY),
                source.getString(AbstractSourceInfo.SCHEMA_NAME_KEY), source.getString(AbstractSourceInfo.TABLE_NAME_KEY));
        Table table = schema.tableFor(tableId);
        if (table == null) {
            throw new DebeziumException("ToastReselector: table " + tableId + " is not in the connector's schema; cannot "
                    + "re-select its unchanged TOASTed columns " + columns);
        }
        List<Field> keyFields = key.schema().fields();
        String query = "SELECT " + columns.stream().map(ToastReselector::quoted).collect(Collectors.joining(", "))
                + " FROM " + quoted(tableId.schema()) + "." + quoted(tableId.table())
                + " WHERE " + keyFields.stream().map(f -> quoted(f.name()) + " = ?").collect(Collectors.joining(" AND "));
        try {
            Connection connection = jdbcConnection.connection();
            boolean found;
            try (PreparedStatement statement = connection.prepareStatement(query)) {
                for (int i = 0; i < keyFields.size(); i++) {
                    bindKey(statement, i + 1, key.get(keyFields.get(i)));
                }
                try (ResultSet row = statement.executeQuery()) {
                    found = row.next();
                    if (found) {
                        for (String name : columns) {
                            Column column = table.columnWithName(name);
                            after.put(name, converted(tableId, column, after.schema().field(name), row.getObject(name)));
                        }
                    }
                }
            }
            finally {
                if (!connection.getAutoCommit()) {
                    connection.commit(); // never hold a snapshot (and the source's xmin) open between events
                }
            }
            if (!found) {
                LOGGER.info("Row {} of {} no longer exists on the source: its change with unchanged TOASTed columns {} "
                        + "is dropped; a later change in the stream removes the row.", key, tableId, columns);
            }
        }
        catch (SQLException e) {
            throw new DebeziumException("ToastReselector: re-selecting the unchanged TOASTed columns " + columns + " of "
                    + tableId + " for key " + key + " failed; the connector restarts and re-selects from its last "
                    + "committed position (nothing was sent). If it repeats, check the source connector's access to "
                    + tableId + " and its statement_timeout.", e);
        }
    }

    /** Bound untyped: PostgreSQL infers the key column's type and parses the text (uuid, numeric, enum alike). */
    private static void bindKey(PreparedStatement statement, int position, Object value) throws SQLException {
        if (value == null) {
            statement.setNull(position, Types.OTHER);
        }
        else if (value instanceof byte[] bytes) {
            statement.setBytes(position, bytes);
        }
        else if (value instanceof ByteBuffer buffer) {
            byte[] bytes = new byte[buffer.remaining()];
            buffer.duplicate().get(bytes);
            statement.setBytes(position, bytes);
        }
        else if (value instanceof Struct) {
            throw new SQLException("key value of Connect type " + ((Struct) value).schema().name() + " cannot be bound");
        }
        else {
            statement.setObject(position, value.toString(), Types.OTHER);
        }
    }

    private Object converted(TableId tableId, Column column, Field field, Object value) {
        ValueConverter converter = customConverterRegistry == null ? null
                : customConverterRegistry.getValueConverter(tableId, column).orElse(null);
        if (converter == null) {
            converter = valueConverterProvider.converter(column, field);
        }
        return converter == null ? value : converter.convert(value);
    }

    static String quoted(String identifier) {
        return "\"" + identifier.replace("\"", "\"\"") + "\"";
    }

    @Override
    public void close() {
    }
}
