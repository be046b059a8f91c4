package local.pgmigration.converters;

import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.transforms.Transformation;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Drops a change event whose row image still holds the unavailable-value placeholder, so the JDBC sink never writes
 * it as data. {@link ToastReselector} runs first and leaves a placeholder only when the row no longer exists on the
 * source (every database error fails the event instead): such a row is removed by a later event of the stream, so
 * dropping this change loses nothing. The placeholder is a string no application writes
 * ({@code pgmigrate.connector_configs.UNAVAILABLE_VALUE_PLACEHOLDER}).
 *
 * <p>Source connector config: {@code transforms=dropVanishedRows},
 * {@code transforms.dropVanishedRows.type=local.pgmigration.converters.DropVanishedRowUpdates},
 * {@code transforms.dropVanishedRows.placeholder} = the connector's {@code unchanged.toast.value.placeholder}.
 */
public class DropVanishedRowUpdates<R extends ConnectRecord<R>> implements Transformation<R> {

    private static final Logger LOGGER = LoggerFactory.getLogger(DropVanishedRowUpdates.class);

    public static final ConfigDef CONFIG_DEF = new ConfigDef().define("placeholder", ConfigDef.Type.STRING,
            UnavailableValues.DEFAULT_PLACEHOLDER, ConfigDef.Importance.HIGH,
            "The connector's unchanged.toast.value.placeholder.");

    private UnavailableValues unavailable = new UnavailableValues(UnavailableValues.DEFAULT_PLACEHOLDER);

    @Override
    public void configure(Map<String, ?> configs) {
        Object placeholder = configs.get("placeholder");
        unavailable = new UnavailableValues(placeholder == null ? UnavailableValues.DEFAULT_PLACEHOLDER : placeholder.toString());
    }

    @Override
    public R apply(R record) {
        if (!(record.value() instanceof Struct value) || value.schema().field("after") == null) {
            return record;
        }
        Struct after = value.getStruct("after");
        if (after == null || "r".equals(value.getString("op"))) {
            return record;
        }
        List<String> columns = unavailable.fieldsHoldingPlaceholder(after);
        if (columns.isEmpty()) {
            return record;
        }
        LOGGER.info("Dropped the change of key {} on topic {}: the row no longer exists on the source (columns {} could "
                + "not be re-selected); a later change in the stream removes it.", record.key(), record.topic(), columns);
        return null;
    }

    @Override
    public ConfigDef config() {
        return CONFIG_DEF;
    }

    @Override
    public void close() {
    }
}
