package local.pgmigration.converters;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.reflect.Proxy;
import java.sql.Types;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.connect.data.SchemaBuilder;
import org.junit.jupiter.api.Test;

import io.debezium.connector.postgresql.UnchangedToastedReplicationMessageColumn;
import io.debezium.spi.converter.CustomConverter;
import io.debezium.spi.converter.RelationalColumn;

/** The converter hands an unchanged TOASTed value on as the placeholder (it threw before: issue 14, item 1). */
class PostgresTextFormConverterTest {

    private static RelationalColumn column(int jdbcType, String typeName) {
        return (RelationalColumn) Proxy.newProxyInstance(RelationalColumn.class.getClassLoader(),
                new Class<?>[]{ RelationalColumn.class }, (proxy, method, args) -> switch (method.getName()) {
                    case "jdbcType" -> jdbcType;
                    case "typeName" -> typeName;
                    case "name" -> "c";
                    case "dataCollection" -> "public.t";
                    default -> null;
                });
    }

    private static CustomConverter.Converter converterFor(RelationalColumn column) {
        PostgresTextFormConverter converter = new PostgresTextFormConverter();
        Properties props = new Properties();
        props.setProperty("unavailable.value.placeholder", "__unchanged__");
        converter.configure(props);
        AtomicReference<CustomConverter.Converter> registered = new AtomicReference<>();
        CustomConverter.ConverterRegistration<SchemaBuilder> registration = (schema, c) -> registered.set(c);
        converter.converterFor(column, registration);
        return registered.get();
    }

    @Test
    void unchangedToastMarkersBecomeThePlaceholder() {
        CustomConverter.Converter array = converterFor(column(Types.ARRAY, "_float4"));
        assertEquals("__unchanged__", array.convert(UnchangedToastedReplicationMessageColumn.UNCHANGED_TOAST_VALUE));
        assertEquals("__unchanged__", array.convert(UnchangedToastedReplicationMessageColumn.UNCHANGED_TEXT_ARRAY_TOAST_VALUE));
        CustomConverter.Converter hstore = converterFor(column(Types.OTHER, "hstore"));
        assertEquals("__unchanged__", hstore.convert(UnchangedToastedReplicationMessageColumn.UNCHANGED_HSTORE_TOAST_VALUE));
        CustomConverter.Converter bits = converterFor(column(Types.OTHER, "varbit"));
        assertEquals("__unchanged__", bits.convert(UnchangedToastedReplicationMessageColumn.UNCHANGED_TOAST_VALUE));
        assertEquals("{1.5,2}", array.convert(FakeArray.of("{1.5,2}")));
    }
}
