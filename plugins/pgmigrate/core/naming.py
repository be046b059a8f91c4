"""Names of everything a migration creates, derived from its `migration_id`.

One place decides them so that a rerun finds what an earlier attempt made (idempotency), and
preflight can tell "ours, from this migration" from "someone else's".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sanitized_topic_name(name: str) -> str:
    """Debezium's AbstractTopicNamingStrategy.sanitizedTopicName (UNDERSCORE replacement), for one name part or
    a whole topic."""
    return _TOPIC_UNSAFE.sub("_", name)


MIGRATION_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,40}$"
_MIGRATION_ID_RE = re.compile(MIGRATION_ID_PATTERN)


class InvalidMigrationId(ValueError):
    pass


def validate_migration_id(migration_id: str) -> str:
    if not isinstance(migration_id, str) or not _MIGRATION_ID_RE.match(migration_id):
        raise InvalidMigrationId(
            f"migration_id {migration_id!r} is invalid: use 1-41 characters, lower-case letters, digits, "
            "'_' or '-', starting with a letter or digit (e.g. 'shop-2026'). It names the connectors, "
            "topics, replication slot and publication."
        )
    return migration_id


@dataclass(frozen=True)
class MigrationNames:
    """`reverse=True`: the names of the target -> source pipeline started at cutover (for rollback). Every
    name differs from the forward one, so both pipelines' objects can exist side by side."""

    migration_id: str
    reverse: bool = False

    def __post_init__(self) -> None:
        validate_migration_id(self.migration_id)

    def reversed(self) -> MigrationNames:
        return MigrationNames(self.migration_id, reverse=not self.reverse)

    @property
    def _snake(self) -> str:
        # Slot names allow only [a-z0-9_]; keep every server-side name in that alphabet. `_rev` keeps the
        # longest name (`pgmigrate_<41 chars>_native_rev`) within PostgreSQL's 63 characters.
        return self.migration_id.replace("-", "_") + ("_rev" if self.reverse else "")

    @property
    def _dashed(self) -> str:
        return self.migration_id + ("-reverse" if self.reverse else "")

    @property
    def slot(self) -> str:
        return f"pgmigrate_{self._snake}"

    @property
    def publication(self) -> str:
        return f"pgmigrate_{self._snake}"

    @property
    def secrets_file(self) -> str:
        """Name of the passwords file the connectors' `${file:…}` references point at."""
        return f"pgmigrate-{self._dashed}.properties"

    @property
    def native_publication(self) -> str:
        """Publication of the tables that travel by PostgreSQL's own logical replication (see native_replication)."""
        return f"pgmigrate_{self.migration_id.replace('-', '_')}_native" + ("_rev" if self.reverse else "")

    @property
    def native_subscription(self) -> str:
        """Subscription on the target for those tables; its slot on the source has the same name."""
        return self.native_publication

    @property
    def source_connector(self) -> str:
        return f"pgmigrate-{self._dashed}-source"

    @property
    def sink_connector(self) -> str:
        return f"pgmigrate-{self._dashed}-sink"

    @property
    def topic_prefix(self) -> str:
        """Debezium `topic.prefix`: data topics are `<prefix>.<schema>.<table>`, sanitized (`change_topic`)."""
        return f"pgmigrate_{self._snake}"

    def change_topic(self, schema: str, table: str) -> str:
        """The topic Debezium writes a table's changes to: every character a Kafka topic cannot hold (outside
        `[A-Za-z0-9._-]`: spaces, quotes, non-ASCII letters) becomes `_`, as its topic naming strategy does."""
        return sanitized_topic_name(f"{self.topic_prefix}.{schema}.{table}")

    @property
    def heartbeat_topic(self) -> str:
        return f"__debezium-heartbeat.{self.topic_prefix}"

    @property
    def dead_letter_topic(self) -> str:
        """The sink's dead letter queue (with `dead_letter=true`): records it could not write, with Connect's
        error headers. Outside `<prefix>.` so the sink's topics.regex never subscribes to it."""
        return f"__pgmigrate-dlq.{self.topic_prefix}"

    @property
    def sink_consumer_group(self) -> str:
        """Kafka Connect names a sink's consumer group `connect-<connector name>`."""
        return f"connect-{self.sink_connector}"

    @property
    def control_schema(self) -> str:
        """Schema on the source holding the migration's heartbeat (replicated, for end-to-end lag)."""
        return "pgmigrate"

    @property
    def signal_table(self) -> str:
        """Debezium's signal table (incremental snapshots for resync), beside the heartbeat."""
        return f"signal_{self._snake}"

    @property
    def heartbeat_table(self) -> str:
        return f"heartbeat_{self._snake}"
