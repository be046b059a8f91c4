package local.pgmigration.converters;

import java.math.BigDecimal;
import java.sql.Array;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.OffsetDateTime;
import java.time.OffsetTime;
import java.time.ZoneOffset;
import java.util.Calendar;
import java.util.GregorianCalendar;
import java.util.Map;

import org.postgresql.PGStatement;
import org.postgresql.util.PGobject;

import io.debezium.connector.postgresql.PostgresValueConverter;
import io.debezium.data.SpecialValueDecimal;

/**
 * PostgreSQL's text form of the Java values Debezium 3.6's PostgreSQL connector hands a converter.
 *
 * <p>Each method accepts the classes the two read paths produce for its type (verified against the connector's
 * source): streaming decodes pgoutput's text with {@code ReplicationMessageColumnValueResolver}, the snapshot
 * reads a JDBC {@code ResultSet} through {@code PostgresConnection.getColumnValue}. The text only has to be
 * <em>input</em> PostgreSQL parses back into the same value (the sink binds it untyped), not byte-identical to
 * PostgreSQL's output. A class a method does not know is an error, never a guess.
 */
public final class PostgresText {

    private PostgresText() {
    }

    /** float4/float8: Float or Double. Java's shortest round-trip digits, and PostgreSQL reads
     *  Java's {@code NaN}, {@code Infinity}, {@code -Infinity} and {@code -0.0} as its own. */
    public static String floating(Object value) {
        if (value instanceof Float || value instanceof Double) {
            return value.toString();
        }
        throw unexpected("float", value);
    }

    /** numeric: SpecialValueDecimal from both paths (NaN, ±Infinity or a BigDecimal with the source's scale). */
    public static String numeric(Object value) {
        if (value instanceof SpecialValueDecimal special) {
            if (special.getDecimalValue().isPresent()) {
                return special.getDecimalValue().get().toPlainString();
            }
            if (special.equals(SpecialValueDecimal.NOT_A_NUMBER)) {
                return "NaN";
            }
            return special.equals(SpecialValueDecimal.POSITIVE_INF) ? "Infinity" : "-Infinity";
        }
        if (value instanceof BigDecimal decimal) {
            return decimal.toPlainString();
        }
        throw unexpected("numeric", value);
    }

    /** date: LocalDate when streamed (infinity as the connector's sentinel dates), java.sql.Date from the snapshot. */
    public static String date(Object value) {
        if (value instanceof LocalDate date) {
            if (date.equals(PostgresValueConverter.POSITIVE_INFINITY_LOCAL_DATE)) {
                return "infinity";
            }
            if (date.equals(PostgresValueConverter.NEGATIVE_INFINITY_LOCAL_DATE)) {
                return "-infinity";
            }
            return isoDate(date) + era(date.getYear());
        }
        if (value instanceof java.sql.Date date) {
            if (date.getTime() == PGStatement.DATE_POSITIVE_INFINITY) {
                return "infinity";
            }
            if (date.getTime() == PGStatement.DATE_NEGATIVE_INFINITY) {
                return "-infinity";
            }
            // The driver set these calendar fields (era included) from PostgreSQL's text in the JVM's default
            // calendar; reading them back the same way gives that text again. (toLocalDate() would drop the era.)
            Calendar calendar = new GregorianCalendar();
            calendar.setTime(date);
            String text = String.format("%04d-%02d-%02d", calendar.get(Calendar.YEAR),
                    calendar.get(Calendar.MONTH) + 1, calendar.get(Calendar.DAY_OF_MONTH));
            return calendar.get(Calendar.ERA) == GregorianCalendar.BC ? text + " BC" : text;
        }
        throw unexpected("date", value);
    }

    /** timestamp: Instant of the UTC-read wall clock when streamed, PostgreSQL's own text from the snapshot. */
    public static String timestamp(Object value) {
        if (value instanceof Instant instant) {
            if (instant.equals(PostgresValueConverter.POSITIVE_INFINITY_INSTANT)) {
                return "infinity";
            }
            if (instant.equals(PostgresValueConverter.NEGATIVE_INFINITY_INSTANT)) {
                return "-infinity";
            }
            LocalDateTime local = LocalDateTime.ofInstant(instant, ZoneOffset.UTC);
            return isoDate(local.toLocalDate()) + " " + time(local.toLocalTime()) + era(local.getYear());
        }
        if (value instanceof String text) {
            return text;
        }
        throw unexpected("timestamp", value);
    }

    /** timestamptz: OffsetDateTime at UTC when streamed, PostgreSQL's own text (with its offset) from the snapshot. */
    public static String timestampWithZone(Object value) {
        if (value instanceof OffsetDateTime dateTime) {
            if (dateTime.equals(PostgresValueConverter.POSITIVE_INFINITY_OFFSET_DATE_TIME)) {
                return "infinity";
            }
            if (dateTime.equals(PostgresValueConverter.NEGATIVE_INFINITY_OFFSET_DATE_TIME)) {
                return "-infinity";
            }
            LocalDateTime utc = dateTime.withOffsetSameInstant(ZoneOffset.UTC).toLocalDateTime();
            return isoDate(utc.toLocalDate()) + " " + time(utc.toLocalTime()) + "+00" + era(utc.getYear());
        }
        if (value instanceof String text) {
            return text;
        }
        throw unexpected("timestamptz", value);
    }

    /**
     * timetz: PostgreSQL's own text from the snapshot (offset kept). When streamed the connector has already
     * turned it into an OffsetTime at UTC (DateTimeFormat.timeWithTimeZone), so the source's offset is gone
     * before any converter runs: the same instant of the day arrives, written with +00.
     */
    public static String timeWithZone(Object value) {
        if (value instanceof OffsetTime offsetTime) {
            return time(offsetTime.toLocalTime()) + offsetTime.getOffset().getId().replace("Z", "+00:00");
        }
        if (value instanceof String text) {
            return text;
        }
        throw unexpected("timetz", value);
    }

    /**
     * time: a Duration since midnight when streamed (Debezium parses pgoutput's text into one, so that 24:00:00
     * survives, which the JDBC sink's conversion of a MicroTime to a LocalTime then rejects: "Invalid value for
     * NanoOfDay"), a java.sql.Time or LocalTime or the text from the snapshot.
     */
    public static String timeOfDay(Object value) {
        if (value instanceof Duration duration) {
            long micros = duration.toNanos() / 1000;
            String text = String.format("%02d:%02d:%02d", micros / 3_600_000_000L, micros / 60_000_000L % 60,
                    micros / 1_000_000L % 60);
            return micros % 1_000_000L == 0 ? text : text + String.format(".%06d", micros % 1_000_000L);
        }
        if (value instanceof LocalTime localTime) {
            return time(localTime);
        }
        if (value instanceof java.sql.Time sqlTime) {
            return time(sqlTime.toLocalTime());
        }
        if (value instanceof String text) {
            return text;
        }
        throw unexpected("time", value);
    }

    /**
     * point: the driver's PGpoint (both read paths), written as "(x,y)". Debezium's own mapping is a PostGIS
     * geometry the JDBC sink writes with ST_GeomFromWKB, a function a target without PostGIS lacks.
     */
    public static String point(Object value) {
        if (value instanceof PGobject object) {
            return object.getValue();
        }
        if (value instanceof String text) {
            return text;
        }
        throw unexpected("point", value);
    }

    /** bit/varbit: the bit string (streamed text, snapshot getString) or the driver's PGobject (snapshot varbit). */
    public static String bits(Object value) {
        if (value instanceof String text) {
            return text;
        }
        if (value instanceof PGobject object) {
            return object.getValue();
        }
        throw unexpected("bit", value);
    }

    /** hstore: the streamed text as is; the snapshot's driver returns a Map, written back as hstore input. */
    public static String hstore(Object value) {
        if (value instanceof String text) {
            return text;
        }
        if (value instanceof Map<?, ?> map) {
            StringBuilder text = new StringBuilder();
            for (Map.Entry<?, ?> entry : map.entrySet()) {
                if (text.length() > 0) {
                    text.append(", ");
                }
                text.append(hstoreQuoted(entry.getKey())).append("=>");
                text.append(entry.getValue() == null ? "NULL" : hstoreQuoted(entry.getValue()));
            }
            return text.toString();
        }
        throw unexpected("hstore", value);
    }

    /**
     * Any array: the driver's PgArray from both paths. Its toString() is the array's text as PostgreSQL wrote it
     * (streamed text, snapshot text-format result), so dimensions, bounds, NULLs and element quoting survive.
     */
    public static String array(Object value) {
        if (value instanceof Array array) {
            return array.toString();
        }
        throw unexpected("array", value);
    }

    private static String hstoreQuoted(Object text) {
        return "\"" + text.toString().replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    /** yyyy-MM-dd with the year of era (PostgreSQL writes 44 BC as 0044 ... BC; java.time's year 0 is 1 BC). */
    private static String isoDate(LocalDate date) {
        int year = date.getYear() > 0 ? date.getYear() : 1 - date.getYear();
        return String.format("%04d-%02d-%02d", year, date.getMonthValue(), date.getDayOfMonth());
    }

    private static String era(int prolepticYear) {
        return prolepticYear > 0 ? "" : " BC";
    }

    /** HH:mm:ss[.ffffff]: PostgreSQL keeps microseconds, and so do both read paths. */
    private static String time(LocalTime time) {
        String text = String.format("%02d:%02d:%02d", time.getHour(), time.getMinute(), time.getSecond());
        return time.getNano() == 0 ? text : text + String.format(".%06d", time.getNano() / 1000);
    }

    private static IllegalArgumentException unexpected(String type, Object value) {
        return new IllegalArgumentException("PostgresTextFormConverter: no text form for a " + type + " value of class "
                + value.getClass().getName() + "; the connector hands over something this converter was not written for");
    }
}
