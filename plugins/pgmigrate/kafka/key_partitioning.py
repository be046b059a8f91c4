"""How a migration spreads each table's changes over several partitions of its change topic, for several sink tasks.

With one partition per topic (the default) the sink applies a table's changes in the source's order with one task.
With `change_topic_partitions` N > 1, the source (`KeyHashPartitionedPostgresConnector`, include/converters) sends
each change of a listed table to the partition of its primary key's hash, so every change of one row stays in one
partition, in order, and N sink tasks (`KeyHashPartitionedJdbcSinkConnector`) apply the partitions side by side.
A TRUNCATE goes to every partition, and each sink task empties there only the rows of its own partition: PostgreSQL
computes the same hash from the row, so no task waits for another. A primary-key change is a delete in the old
key's partition and an insert in the new one's; the sink task retries (for a minute) a write that a change of
another partition not yet applied blocks on a unique index (a unique column that kept its value).

Only tables whose key columns are integers, text or uuid are spread (the characters the source hashes must be what
`::text` gives on the target); any other table, and the pipeline's own, stays in partition 0 in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from pgmigrate.core.catalog import TableInfo, TableRef

# include/converters/src/main/java/local/pgmigration/partitioning
PARTITIONED_SOURCE_CLASS = "local.pgmigration.partitioning.KeyHashPartitionedPostgresConnector"
PARTITIONED_SINK_CLASS = "local.pgmigration.partitioning.KeyHashPartitionedJdbcSinkConnector"
CONFIG_KEY = "pgmigrate.partitioning"

# smallint, integer, bigint, text, varchar, uuid: Debezium hands over an Integer/Long/String whose text is `::text`.
HASHABLE_KEY_TYPE_OIDS = frozenset({21, 23, 20, 25, 1043, 2950})


@dataclass(frozen=True)
class KeyHashPartitioning:
    partitions: int
    keys: dict[TableRef, tuple[str, ...]] = field(default_factory=dict)  # spread tables -> key columns, hash order

    @classmethod
    def of(cls, tables: Iterable[TableInfo], partitions: int) -> KeyHashPartitioning:
        return cls(partitions, {t.ref: tuple(t.primary_key) for t in tables if spreadable(t)})

    @property
    def spread(self) -> bool:
        return self.partitions > 1

    def config_value(self) -> str:
        """The JSON both connectors read (`KeyHashPartitioning.parse` in Java)."""
        tables = [
            {"schema": ref.schema, "table": ref.name, "key": list(key)}
            for ref, key in sorted(self.keys.items(), key=lambda item: (item[0].schema, item[0].name))
        ]
        return json.dumps({"partitions": self.partitions, "tables": tables}, ensure_ascii=False)

    def describe(self, tables: Iterable[TableRef]) -> str:
        kept = sorted(t.qualified for t in tables if t not in self.keys)
        return f"{self.partitions} partitions per change topic, {len(self.keys)} tables spread by key hash" + (
            f"; in partition 0 (key not integer, text or uuid): {', '.join(kept)}" if kept else ""
        )


class PartitionCountMismatch(ValueError):
    pass


def check_existing_topics(partition_counts: dict[str, int], partitions: int, migration_id: str) -> None:
    """Refuse a partition count the change topics already made disagree with: the source would send records to
    partitions a topic lacks (a failed connector), or leave some of a topic's partitions to one table's stray
    changes. Topics are made by the first deploy after a load; a new load (`snapshot` rerun) deletes them."""
    wrong = sorted(f"{topic} ({count})" for topic, count in partition_counts.items() if count != partitions)
    if wrong:
        raise PartitionCountMismatch(
            f"change_topic_partitions={partitions}, but the migration's change topics already exist with other "
            f"partition counts: {', '.join(wrong[:5])}{' …' if len(wrong) > 5 else ''}. Rerun migration "
            f"{migration_id} with the count they have, or start its load over with the new count (clear the "
            "`snapshot` task: it deletes the topics and loads again)."
        )


def spreadable(table: TableInfo) -> bool:
    """A primary key of integer, text or uuid columns (no domains: Debezium names the domain, not its base)."""
    by_name = {c.name: c for c in table.columns}
    return bool(table.primary_key) and all(
        name in by_name and by_name[name].type_oid in HASHABLE_KEY_TYPE_OIDS for name in table.primary_key
    )
