package local.pgmigration.converters;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.math.BigDecimal;
import java.sql.Types;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalTime;
import java.time.OffsetDateTime;
import java.time.OffsetTime;
import java.time.ZoneOffset;
import java.util.LinkedHashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.postgresql.PGStatement;
import org.postgresql.util.PGobject;

import io.debezium.connector.postgresql.PostgresValueConverter;
import io.debezium.data.SpecialValueDecimal;

/** The text each Java value becomes; the values are the ones the connector's two read paths produce. */
class PostgresTextTest {

    @Test
    void floatSpecialValuesKeepTheirIdentity() {
        assertEquals("NaN", PostgresText.floating(Float.NaN));
        assertEquals("Infinity", PostgresText.floating(Double.POSITIVE_INFINITY));
        assertEquals("-Infinity", PostgresText.floating(Float.NEGATIVE_INFINITY));
        assertEquals("-0.0", PostgresText.floating(-0.0d));
        assertEquals("1.4E-45", PostgresText.floating(Float.MIN_VALUE));
        assertEquals("0.1", PostgresText.floating(0.1d));
        assertThrows(IllegalArgumentException.class, () -> PostgresText.floating("1"));
    }

    @Test
    void numericKeepsScaleAndSpecialValues() {
        assertEquals("NaN", PostgresText.numeric(SpecialValueDecimal.NOT_A_NUMBER));
        assertEquals("Infinity", PostgresText.numeric(SpecialValueDecimal.POSITIVE_INF));
        assertEquals("-Infinity", PostgresText.numeric(SpecialValueDecimal.NEGATIVE_INF));
        assertEquals("1.50", PostgresText.numeric(new SpecialValueDecimal(new BigDecimal("1.50"))));
        assertEquals("0.000001", PostgresText.numeric(new BigDecimal("1E-6")));
    }

    @Test
    void streamedDatesWithInfinityAndEra() {
        assertEquals("infinity", PostgresText.date(PostgresValueConverter.POSITIVE_INFINITY_LOCAL_DATE));
        assertEquals("-infinity", PostgresText.date(PostgresValueConverter.NEGATIVE_INFINITY_LOCAL_DATE));
        assertEquals("2026-01-02", PostgresText.date(LocalDate.of(2026, 1, 2)));
        assertEquals("0044-03-15 BC", PostgresText.date(LocalDate.of(-43, 3, 15)));
        assertEquals("0001-01-01 BC", PostgresText.date(LocalDate.of(0, 1, 1)));
        assertEquals("12345-06-07", PostgresText.date(LocalDate.of(12345, 6, 7)));
    }

    @Test
    void snapshotDatesWithInfinity() {
        assertEquals("infinity", PostgresText.date(new java.sql.Date(PGStatement.DATE_POSITIVE_INFINITY)));
        assertEquals("-infinity", PostgresText.date(new java.sql.Date(PGStatement.DATE_NEGATIVE_INFINITY)));
        assertEquals("2026-01-02", PostgresText.date(java.sql.Date.valueOf("2026-01-02")));
    }

    @Test
    void streamedTimestamps() {
        assertEquals("infinity", PostgresText.timestamp(PostgresValueConverter.POSITIVE_INFINITY_INSTANT));
        assertEquals("-infinity", PostgresText.timestamp(PostgresValueConverter.NEGATIVE_INFINITY_INSTANT));
        assertEquals("2026-01-02 03:04:05.000120", PostgresText.timestamp(Instant.parse("2026-01-02T03:04:05.000120Z")));
        assertEquals("0044-03-15 12:00:00 BC", PostgresText.timestamp(Instant.parse("-0043-03-15T12:00:00Z")));
        assertEquals("2026-01-02 03:04:05.5+00", PostgresText.timestamp("2026-01-02 03:04:05.5+00"));
    }

    @Test
    void streamedTimestampsWithZone() {
        assertEquals("infinity", PostgresText.timestampWithZone(PostgresValueConverter.POSITIVE_INFINITY_OFFSET_DATE_TIME));
        assertEquals("-infinity", PostgresText.timestampWithZone(PostgresValueConverter.NEGATIVE_INFINITY_OFFSET_DATE_TIME));
        assertEquals("2026-01-02 01:04:05.654321+00",
                PostgresText.timestampWithZone(OffsetDateTime.parse("2026-01-02T03:04:05.654321+02:00")));
        assertEquals("0044-03-15 12:00:00+00 BC",
                PostgresText.timestampWithZone(OffsetDateTime.of(-43, 3, 15, 12, 0, 0, 0, ZoneOffset.UTC)));
    }

    @Test
    void timeOfDay() {
        assertEquals("24:00:00", PostgresText.timeOfDay(Duration.ofHours(24)));
        assertEquals("23:59:59.999999", PostgresText.timeOfDay(Duration.ofNanos(86_399_999_999_000L)));
        assertEquals("00:00:00.000500", PostgresText.timeOfDay(Duration.ofNanos(500_000L)));
        assertEquals("12:00:01", PostgresText.timeOfDay(LocalTime.of(12, 0, 1)));
        assertEquals("24:00:00", PostgresText.timeOfDay("24:00:00"));
    }

    @Test
    void point() throws Exception {
        assertEquals("(1.5,-2.0)", PostgresText.point(new org.postgresql.geometric.PGpoint(1.5, -2)));
        assertEquals("(1,2)", PostgresText.point("(1,2)"));
    }

    @Test
    void timeWithZone() {
        assertEquals("01:04:05+00:00", PostgresText.timeWithZone(OffsetTime.parse("01:04:05Z")));
        assertEquals("03:04:05.500000+02:00", PostgresText.timeWithZone(OffsetTime.parse("03:04:05.5+02:00")));
        assertEquals("03:04:05+02", PostgresText.timeWithZone("03:04:05+02"));
    }

    @Test
    void bitsAndHstore() throws Exception {
        assertEquals("0011", PostgresText.bits("0011"));
        PGobject varbit = new PGobject();
        varbit.setType("varbit");
        varbit.setValue("001");
        assertEquals("001", PostgresText.bits(varbit));
        Map<String, String> map = new LinkedHashMap<>();
        map.put("a", "1");
        map.put("q\"uote", "back\\slash");
        map.put("n", null);
        assertEquals("\"a\"=>\"1\", \"q\\\"uote\"=>\"back\\\\slash\", \"n\"=>NULL", PostgresText.hstore(map));
        assertEquals("\"a\"=>\"1\"", PostgresText.hstore("\"a\"=>\"1\""));
    }

    @Test
    void columnSelection() {
        assertEquals(null, PostgresTextFormConverter.formatFor(Types.INTEGER, "int4"));
        assertNull(PostgresTextFormConverter.formatFor(Types.OTHER, "jsonb"));
        assertEquals("x", PostgresTextFormConverter.formatFor(Types.ARRAY, "_mood").apply(FakeArray.of("x")));
        assertEquals("NaN", PostgresTextFormConverter.formatFor(Types.REAL, "float4").apply(Float.NaN));
    }
}
