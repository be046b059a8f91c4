package local.pgmigration.policy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;

import org.apache.kafka.common.config.ConfigValue;
import org.apache.kafka.connect.connector.Connector;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigOverridePolicy;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigRequest;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigRequest.ClientType;
import org.apache.kafka.connect.health.ConnectorType;
import org.apache.kafka.connect.sink.SinkConnector;
import org.apache.kafka.connect.source.SourceConnector;
import org.junit.jupiter.api.Test;

/** The policy passes the pipeline's overrides and refuses any other, naming the key. */
class PipelineClientOverridePolicyTest {

    private final PipelineClientOverridePolicy policy = new PipelineClientOverridePolicy();

    /** As Connect's herder asks: one client's overrides, their prefix removed. */
    private List<ConfigValue> validate(ConnectorType type, Class<? extends Connector> connector, ClientType client,
            Map<String, Object> props) {
        return policy.validate(new ConnectorClientConfigRequest("shop-2026-sink", type, connector, props, client));
    }

    private static ConfigValue only(List<ConfigValue> values) {
        assertEquals(1, values.size());
        return values.get(0);
    }

    @Test
    void allowsTheOverridesOfTheConnectorConfigs() {
        List<ConfigValue> values = validate(ConnectorType.SINK, SinkConnector.class, ClientType.CONSUMER,
                Map.of("max.partition.fetch.bytes", 67108864, "metadata.max.age.ms", 5000));
        assertEquals(2, values.size());
        for (ConfigValue value : values) {
            assertEquals(List.of(), value.errorMessages(), value.name());
        }
        ConfigValue producer = only(validate(ConnectorType.SOURCE, SourceConnector.class, ClientType.PRODUCER,
                Map.of("max.request.size", 67108864)));
        assertEquals("max.request.size", producer.name());
        assertEquals(List.of(), producer.errorMessages());
    }

    @Test
    void refusesAnyOtherKeyNamingIt() {
        ConfigValue groupId = only(validate(ConnectorType.SINK, SinkConnector.class, ClientType.CONSUMER,
                Map.of("group.id", "someone-elses-group")));
        // Unprefixed, as Connect passed it: the herder reports it as consumer.override.group.id.
        assertEquals("group.id", groupId.name());
        assertEquals(1, groupId.errorMessages().size());
        String message = groupId.errorMessages().get(0);
        assertTrue(message.contains("'consumer.override.group.id'"), message);
        assertTrue(message.contains("allows only "), message);
        assertTrue(message.contains("consumer.override.max.poll.records"), message);

        ConfigValue servers = only(validate(ConnectorType.SOURCE, SourceConnector.class, ClientType.PRODUCER,
                Map.of("bootstrap.servers", "elsewhere:9092")));
        assertTrue(servers.errorMessages().get(0).contains("'producer.override.bootstrap.servers'"));
    }

    @Test
    void allowsAKeyForItsOwnClientOnly() {
        ConfigValue consumer = only(validate(ConnectorType.SINK, SinkConnector.class, ClientType.CONSUMER,
                Map.of("max.request.size", 67108864)));
        assertTrue(consumer.errorMessages().get(0).contains("'consumer.override.max.request.size'"));
        ConfigValue admin = only(validate(ConnectorType.SOURCE, SourceConnector.class, ClientType.ADMIN,
                Map.of("compression.type", "lz4")));
        assertTrue(admin.errorMessages().get(0).contains("'admin.override.compression.type'"));
    }

    @Test
    void noOverridesNoValues() {
        assertEquals(List.of(), validate(ConnectorType.SOURCE, SourceConnector.class, ClientType.ADMIN, Map.of()));
    }

    @Test
    void connectFindsItThroughItsServiceManifest() {
        // plugin.discovery=service_load (and hybrid_warn's check) find a policy only through this manifest.
        boolean listed = ServiceLoader.load(ConnectorClientConfigOverridePolicy.class).stream()
                .anyMatch(p -> p.type() == PipelineClientOverridePolicy.class);
        assertTrue(listed);
    }
}
