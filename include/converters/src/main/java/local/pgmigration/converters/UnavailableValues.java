package local.pgmigration.converters;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.Struct;

/**
 * Recognises Debezium's "unavailable value" placeholder in a change event's row image: what an UPDATE carries for a
 * TOASTed column it did not change. As text for strings (and every column {@link PostgresTextFormConverter}
 * converts), as its UTF-8 bytes for bytea, and as Debezium's {@code {"p":"p"}} for hstore in json mode.
 */
final class UnavailableValues {

    /** Debezium's default {@code unchanged.toast.value.placeholder}. */
    static final String DEFAULT_PLACEHOLDER = "__debezium_unavailable_value";

    private final String text;
    private final ByteBuffer bytes;
    private final String json;

    UnavailableValues(String placeholder) {
        this.text = placeholder;
        this.bytes = ByteBuffer.wrap(placeholder.getBytes(StandardCharsets.UTF_8));
        this.json = "{\"" + placeholder + "\":\"" + placeholder + "\"}";
    }

    /** The names of the fields of {@code row} that hold the placeholder instead of a value, in schema order. */
    List<String> fieldsHoldingPlaceholder(Struct row) {
        List<String> names = new ArrayList<>();
        for (Field field : row.schema().fields()) {
            if (isPlaceholder(field.schema(), row.get(field))) {
                names.add(field.name());
            }
        }
        return names;
    }

    boolean isPlaceholder(Schema schema, Object value) {
        if (value == null) {
            return false;
        }
        switch (schema.type()) {
            case STRING:
                return text.equals(value) || json.equals(value);
            case BYTES:
                if (value instanceof byte[] array) {
                    return bytes.equals(ByteBuffer.wrap(array));
                }
                return value instanceof ByteBuffer buffer && bytes.equals(buffer);
            default:
                return false;
        }
    }
}
