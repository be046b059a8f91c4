package local.pgmigration.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Map;

import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.junit.jupiter.api.Test;

/** A value past Jackson's default 20,000,000-character limit reads back whole. */
class LargeValueJsonConverterTest {

    @Test
    void readsAStringLongerThanJacksonsDefaultLimit() {
        LargeValueJsonConverter converter = new LargeValueJsonConverter();
        converter.configure(Map.of("schemas.enable", "true"), false);
        String big = "x".repeat(21_000_000);
        byte[] json = converter.fromConnectData("t", Schema.STRING_SCHEMA, big);
        SchemaAndValue back = converter.toConnectData("t", json);
        assertEquals(big.length(), ((String) back.value()).length());
    }
}
