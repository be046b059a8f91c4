"""The Connect workers' client override policy allows exactly the overrides the connector configs set.

Connect refuses a connector config with an override the policy does not allow (include/converters,
`PipelineClientOverridePolicy.ALLOWED_OVERRIDES`): a key added to connector_configs.py without the allow-list would
fail every deploy, one left in the allow-list after its key went would allow more than the connectors use.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connector_configs import SecretRefs, build_sink_config, build_source_config, dead_letter_config
from pgmigrate.kafka.topic_settings import TopicSettings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
POLICY_SOURCE = REPO / "include/converters/src/main/java/local/pgmigration/policy/PipelineClientOverridePolicy.java"
POLICY_CLASS = "local.pgmigration.policy.PipelineClientOverridePolicy"
POLICY_MANIFEST = (
    REPO
    / "include/converters/src/main/resources/META-INF/services"
    / "org.apache.kafka.connect.connector.policy.ConnectorClientConfigOverridePolicy"
)
WORKER_CONFIGS = (
    REPO / "include/stack/connect-distributed.properties",
    REPO / "include/docker/connect-distributed.properties",
)
OVERRIDE_KEY = re.compile(r"(producer|consumer|admin)\.override\.")

NAMES = MigrationNames("shop-2026")
SOURCE = PgEndpoint("db1", 5432, "shop", "migrator", "s3cret")
TARGET = PgEndpoint("db2", 5432, "shop", "migrator", "s3cret")
SECRETS = SecretRefs("/secrets/pgmigrate-shop-2026.properties")
TOPICS = TopicSettings(replication_factor=3, min_insync_replicas=2)
TABLES = [TableRef("public", "orders")]


def java_allow_list() -> set[str]:
    """The string literals of `ALLOWED_OVERRIDES = Set.of(...)`."""
    match = re.search(r"ALLOWED_OVERRIDES\s*=\s*Set\.of\((.*?)\);", POLICY_SOURCE.read_text(), re.DOTALL)
    assert match, f"no ALLOWED_OVERRIDES = Set.of(...) in {POLICY_SOURCE}"
    body = "\n".join(line.split("//", 1)[0] for line in match.group(1).splitlines())
    return set(re.findall(r'"([^"]+)"', body))


def connector_overrides() -> set[str]:
    configs = [
        build_source_config(NAMES, SOURCE, TABLES, method, SECRETS, [(TABLES[0], "total")], topics=TOPICS)
        for method in ("copy", "debezium")
    ]
    configs += [
        build_sink_config(NAMES, TARGET, ["public"], SECRETS, dead_letter=dead_letter, topics=TOPICS)
        for dead_letter in (False, True)
    ]
    configs.append(dead_letter_config(NAMES, TOPICS))
    return {key for config in configs for key in config if OVERRIDE_KEY.match(key)}


def test_the_allow_list_is_exactly_the_connector_configs_overrides():
    allowed = java_allow_list()
    assert all(OVERRIDE_KEY.match(key) for key in allowed), allowed
    used = connector_overrides()
    assert "producer.override.max.request.size" in used  # the configs are read at all
    assert used - allowed == set(), f"add to {POLICY_SOURCE.name}'s ALLOWED_OVERRIDES (Connect refuses them)"
    assert allowed - used == set(), f"no connector sets these any more: remove them from {POLICY_SOURCE.name}"


def test_both_workers_use_the_policy_and_connect_can_find_it():
    assert POLICY_SOURCE.stem == POLICY_CLASS.rsplit(".", 1)[1]
    assert f"package {POLICY_CLASS.rsplit('.', 1)[0]};" in POLICY_SOURCE.read_text()
    # plugin.discovery=service_load finds a policy only through its ServiceLoader manifest.
    assert POLICY_MANIFEST.read_text().split() == [POLICY_CLASS]
    for path in WORKER_CONFIGS:
        values = re.findall(r"^connector\.client\.config\.override\.policy=(.*)$", path.read_text(), re.MULTILINE)
        assert values == [POLICY_CLASS], path


def test_both_stacks_put_the_policy_jar_in_its_own_plugin_dir():
    """Connect loads the policy from plugin.path at start: without the jar the worker does not start."""
    built = "converters/target/pgmigration-converters-override-policy.jar"
    dockerfile = (REPO / "include/docker/connect.Dockerfile").read_text()
    assert re.search(rf"cp {re.escape(built)} \\\s+/stack/lib/connect-plugins/pgmigration-override-policy/", dockerfile)
    common = (REPO / "scripts/stack.d/common.sh").read_text()
    assert 'POLICY_PLUGIN_DIR="$LIB/connect-plugins/pgmigration-override-policy"' in common
    install = (REPO / "scripts/install.sh").read_text()
    assert f'policy_jar="$module/target/{Path(built).name}"' in install
    assert 'cp "$policy_jar" "$POLICY_PLUGIN_DIR/$POLICY_JAR"' in install
