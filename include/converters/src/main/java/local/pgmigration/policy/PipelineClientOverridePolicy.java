package local.pgmigration.policy;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import org.apache.kafka.common.config.ConfigValue;
import org.apache.kafka.connect.components.Versioned;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigOverridePolicy;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigRequest;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Connect workers' {@code connector.client.config.override.policy}: a connector may override exactly the client
 * settings the pipeline's connectors set (plugins/pgmigrate/kafka/connector_configs.py) and no other.
 *
 * <p>Kafka's {@code All} would let any connector config point its clients at another cluster, another consumer group
 * or other credentials; {@code None} would refuse the sizes our change events need. The allow-list is by full key
 * ({@code producer.override.max.request.size}), so a setting allowed for one client is not allowed for another.
 * Kafka's own policies extend AbstractConnectorClientConfigOverridePolicy (connect-runtime), whose final
 * {@code validate} hands {@code isAllowed} only the key without its prefix: it cannot tell the producer from the
 * consumer, so this one implements the interface itself (connect-api only).
 *
 * <p>Connect calls {@link #validate} once per client (producer, consumer, admin) with that client's overrides, their
 * {@code *.override.} prefix removed, when a connector config is validated or created (a refused key is an error on
 * that key and the config is rejected) and again when a task starts (it fails). Worker config:
 * {@code connector.client.config.override.policy=local.pgmigration.policy.PipelineClientOverridePolicy}; the jar is
 * its own plugin dir under {@code plugin.path} (scripts/install.sh, connect.Dockerfile).
 *
 * <p>tests/unit/test_override_policy.py reads {@link #ALLOWED_OVERRIDES} from this file and checks it equals the
 * overrides the connector configs set: a new override must be added here too.
 */
public class PipelineClientOverridePolicy implements ConnectorClientConfigOverridePolicy, Versioned {

    private static final Logger LOGGER = LoggerFactory.getLogger(PipelineClientOverridePolicy.class);

    /** Every client override a pipeline connector may set, by its full connector-config key. */
    static final Set<String> ALLOWED_OVERRIDES = Set.of(
            // Source: a change event up to MAX_CHANGE_EVENT_BYTES must fit one produce request (default 1 MiB).
            "producer.override.max.request.size",
            // Source: the producer's buffer must hold at least one such record (twice the largest event).
            "producer.override.buffer.memory",
            // Source: lz4 batches: JSON with schemas shrinks ~10x on the wire and on the brokers' disks.
            "producer.override.compression.type",
            // Sink: a topic the sink's group has no offset for is read from its first event (explicit; Connect's default).
            "consumer.override.auto.offset.reset",
            // Sink: up to 2000 records a poll (default 500) for the JDBC sink's batches.
            "consumer.override.max.poll.records",
            // Sink: one partition's fetch may hold a change event of up to MAX_CHANGE_EVENT_BYTES.
            "consumer.override.max.partition.fetch.bytes",
            // Sink: the topics.regex subscription sees a new table's topic within 5 s instead of 5 min.
            "consumer.override.metadata.max.age.ms");

    /** The connector-config prefix of each client's overrides (ConnectorConfig's CONNECTOR_CLIENT_*_OVERRIDES_PREFIX). */
    static String prefix(ConnectorClientConfigRequest.ClientType clientType) {
        switch (clientType) {
            case PRODUCER:
                return "producer.override.";
            case CONSUMER:
                return "consumer.override.";
            case ADMIN:
                return "admin.override.";
            default:
                throw new IllegalArgumentException("Unknown client type " + clientType);
        }
    }

    @Override
    public List<ConfigValue> validate(ConnectorClientConfigRequest request) {
        String prefix = prefix(request.clientType());
        List<ConfigValue> values = new ArrayList<>();
        for (Map.Entry<String, Object> entry : request.clientProps().entrySet()) {
            // The name stays unprefixed, as Connect passed it: the herder prefixes it again for its response.
            ConfigValue value = new ConfigValue(entry.getKey(), entry.getValue(), new ArrayList<>(), new ArrayList<>());
            String key = prefix + entry.getKey();
            if (!ALLOWED_OVERRIDES.contains(key)) {
                value.addErrorMessage(refusal(key));
            }
            values.add(value);
        }
        return values;
    }

    static String refusal(String key) {
        return "The pgmigrate override policy (" + PipelineClientOverridePolicy.class.getName() + ") does not allow '"
                + key + "' in a connector configuration: it allows only " + String.join(", ", new TreeSet<>(ALLOWED_OVERRIDES))
                + " (the overrides of plugins/pgmigrate/kafka/connector_configs.py).";
    }

    @Override
    public void configure(Map<String, ?> configs) {
        LOGGER.info("Connector client config override policy {}: connectors may override only {}",
                PipelineClientOverridePolicy.class.getName(), new TreeSet<>(ALLOWED_OVERRIDES));
    }

    @Override
    public String version() {
        return "1";
    }

    @Override
    public void close() {
    }
}
