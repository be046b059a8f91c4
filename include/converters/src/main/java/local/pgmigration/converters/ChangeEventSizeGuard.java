package local.pgmigration.converters;

import java.nio.ByteBuffer;
import java.util.Collection;
import java.util.Map;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.transforms.Transformation;

/**
 * Fails a change event that would be too large for Kafka with a message naming its table and key, before the producer
 * refuses it with a bare {@code RecordTooLargeException} (size only) and the operator has to find the row.
 *
 * <p>The pipeline sizes the producer ({@code max.request.size}) and the change topics ({@code max.message.bytes}) for
 * {@code max.bytes}; the JSON converter with schemas and base64 for binary values make the serialized event larger
 * than the row. Measuring is cheap for ordinary rows: only an event whose values add up to more than a quarter of
 * the limit (and not already past it) is serialized here once more to learn its exact size. Nothing is skipped: the task fails and the
 * pipeline waits until the row is made smaller on the source or the limit is raised.
 *
 * <p>Source connector config: {@code transforms.sizeGuard.type=local.pgmigration.converters.ChangeEventSizeGuard},
 * {@code transforms.sizeGuard.max.bytes} = the producer's {@code max.request.size}.
 */
public class ChangeEventSizeGuard<R extends ConnectRecord<R>> implements Transformation<R> {

    public static final ConfigDef CONFIG_DEF = new ConfigDef().define("max.bytes", ConfigDef.Type.LONG,
            64L * 1024 * 1024, ConfigDef.Importance.HIGH, "The producer's max.request.size.");

    private long maxBytes = 64L * 1024 * 1024;
    private JsonConverter keyConverter;
    private JsonConverter valueConverter;

    @Override
    public void configure(Map<String, ?> configs) {
        Object configured = configs.get("max.bytes");
        if (configured != null) {
            maxBytes = Long.parseLong(configured.toString());
        }
        keyConverter = jsonConverter(true);
        valueConverter = jsonConverter(false);
    }

    private static JsonConverter jsonConverter(boolean isKey) {
        JsonConverter converter = new JsonConverter();
        converter.configure(Map.of("schemas.enable", "true"), isKey);
        return converter;
    }

    @Override
    public R apply(R record) {
        if (!(record.value() instanceof Struct value)) {
            return record;
        }
        long raw = rawSize(value);
        if (raw <= maxBytes / 4) {
            return record;
        }
        long size = raw > maxBytes ? raw : serializedSize(record);
        if (size <= maxBytes) {
            return record;
        }
        throw new DataException(String.format("The change of key %s on topic %s serializes to at least %,d bytes, "
                + "over the pipeline's %,d-byte limit for one change event (max.request.size, max.message.bytes): the "
                + "connector stops here rather than lose it. Make the row smaller on the source (its largest values), "
                + "or leave the table out of this migration and move it separately.", record.key(), record.topic(), size,
                maxBytes));
    }

    private long serializedSize(R record) {
        long size = valueConverter.fromConnectData(record.topic(), record.valueSchema(), record.value()).length;
        if (record.key() != null) {
            size += keyConverter.fromConnectData(record.topic(), record.keySchema(), record.key()).length;
        }
        return size;
    }

    /** The bytes the values hold (strings counted by length): a lower bound of the serialized size. */
    static long rawSize(Object value) {
        if (value instanceof Struct struct) {
            long total = 0;
            for (Field field : struct.schema().fields()) {
                total += rawSize(struct.get(field));
            }
            return total;
        }
        if (value instanceof String text) {
            return text.length();
        }
        if (value instanceof byte[] bytes) {
            return bytes.length;
        }
        if (value instanceof ByteBuffer buffer) {
            return buffer.remaining();
        }
        if (value instanceof Collection<?> items) {
            long total = 0;
            for (Object item : items) {
                total += rawSize(item);
            }
            return total;
        }
        if (value instanceof Map<?, ?> map) {
            long total = 0;
            for (Map.Entry<?, ?> entry : map.entrySet()) {
                total += rawSize(entry.getKey()) + rawSize(entry.getValue());
            }
            return total;
        }
        return value == null ? 0 : 8;
    }

    @Override
    public ConfigDef config() {
        return CONFIG_DEF;
    }

    @Override
    public void close() {
        if (keyConverter != null) {
            keyConverter.close();
            valueConverter.close();
        }
    }
}
