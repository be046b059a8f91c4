package local.pgmigration.sink;

import com.fasterxml.jackson.core.StreamReadConstraints;

import org.apache.kafka.connect.json.JsonConverter;

/**
 * Kafka's JsonConverter, able to read the large values the pipeline carries. Its Jackson refuses any JSON string
 * longer than 20,000,000 characters (StreamReadConstraints' default; Kafka offers no setting), so the sink failed on
 * a 20 MiB text or a 15 MiB bytea (base64) value that the source had written without complaint.
 *
 * <p>Jackson reads the limit from a JVM-wide default when a parser factory is built, and JsonConverter builds its
 * own in its constructor: the default is raised here once, before the first instance is constructed, to the
 * largest value a change event may hold. It only ever raises it, and it affects Jackson factories built afterwards
 * in this worker, which is what a Connect worker carrying such rows needs anyway.
 *
 * <p>Sink connector config: {@code value.converter=local.pgmigration.sink.LargeValueJsonConverter},
 * {@code value.converter.schemas.enable=true}.
 */
public class LargeValueJsonConverter extends JsonConverter {

    /** Characters of one JSON string value: above the pipeline's 64 MiB change event limit. */
    static final int MAX_STRING_LENGTH = 100_000_000;

    static {
        if (StreamReadConstraints.defaults().getMaxStringLength() < MAX_STRING_LENGTH) {
            StreamReadConstraints.overrideDefaultStreamReadConstraints(
                    StreamReadConstraints.defaults().rebuild().maxStringLength(MAX_STRING_LENGTH).build());
        }
    }
}
