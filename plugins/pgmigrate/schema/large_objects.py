"""Large objects (`pg_largeobject`): copied with their oids after the initial load, compared by validation.

The schema copy leaves them out (pg_dump's BLOB entries carry data), and logical decoding does not carry them at all:
an `oid` column pointing at one would dangle on the target. So `apply_post_data` copies every large object of the
source database with its own oid, as pg_dump does (`lo_create(oid)`, then the data in chunks), and the validators
compare them by oid, size and md5. Changes to large objects after the copy are not streamed: preflight and the
README say so, and `copy_large_objects` run again (rerun `apply_post_data`) brings the target up to date.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import psycopg

from pgmigrate.core.endpoints import PgEndpoint

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024  # one lo_get/lo_put round trip: bounded memory whatever a large object's size


@dataclass(frozen=True)
class LargeObjectDigest:
    oid: int
    size: int
    md5: str


def large_object_oids(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT oid FROM pg_largeobject_metadata ORDER BY oid").fetchall()]


def _digest(conn: psycopg.Connection, oid: int) -> LargeObjectDigest:
    md5, size, offset = hashlib.md5(usedforsecurity=False), 0, 0
    while True:
        chunk = conn.execute("SELECT lo_get(%s, %s, %s)", (oid, offset, CHUNK_BYTES)).fetchone()[0]
        md5.update(chunk)
        size += len(chunk)
        offset += len(chunk)
        if len(chunk) < CHUNK_BYTES:
            return LargeObjectDigest(oid, size, md5.hexdigest())


def large_object_summary(conn: psycopg.Connection) -> tuple[int, int | None]:
    """(count, total bytes) of the database's large objects, for preflight's note; bytes None when the role may not
    read pg_largeobject (only a superuser may by default)."""
    count = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    if not count or not conn.execute("SELECT has_table_privilege('pg_catalog.pg_largeobject', 'SELECT')").fetchone()[0]:
        return count, None if count else 0
    return count, conn.execute("SELECT coalesce(sum(length(data)), 0) FROM pg_largeobject").fetchone()[0]


def copy_large_objects(source: PgEndpoint, target: PgEndpoint) -> dict[str, int]:
    """Every large object of the source on the target with the same oid and contents. Safe to rerun: one already
    identical is kept, one that differs is rewritten, one the source no longer has is left alone (never delete
    on the target what the migration cannot know the origin of)."""
    copied = kept = copied_bytes = 0
    started = time.monotonic()
    with source.connect(autocommit=True) as src, target.connect(autocommit=True) as tgt:
        oids = large_object_oids(src)
        on_target = set(large_object_oids(tgt))
        for number, oid in enumerate(oids, 1):
            wanted = _digest(src, oid)
            if oid in on_target and _digest(tgt, oid) == wanted:
                kept += 1
                continue
            with tgt.transaction():
                if oid in on_target:
                    tgt.execute("SELECT lo_unlink(%s)", (oid,))
                tgt.execute("SELECT lo_create(%s)", (oid,))
                offset = 0
                while offset < wanted.size:
                    chunk = src.execute("SELECT lo_get(%s, %s, %s)", (oid, offset, CHUNK_BYTES)).fetchone()[0]
                    tgt.execute("SELECT lo_put(%s, %s, %s)", (oid, offset, chunk))
                    offset += len(chunk)
            copied += 1
            copied_bytes += wanted.size
            if number % 100 == 0 or number == len(oids):
                log.info(
                    "large objects: %d/%d (%d copied, %.1f MB, %d already identical) in %.1fs",
                    number,
                    len(oids),
                    copied,
                    copied_bytes / 1e6,
                    kept,
                    time.monotonic() - started,
                )
    return {"large_objects": len(oids), "copied": copied, "identical": kept, "bytes": copied_bytes}


def compare_large_objects(source: PgEndpoint, target: PgEndpoint) -> list[str]:
    """Differences by oid: missing on the target, extra on the target, or different size/contents."""
    differences = []
    with source.connect(autocommit=True) as src, target.connect(autocommit=True) as tgt:
        source_oids, target_oids = large_object_oids(src), set(large_object_oids(tgt))
        for oid in source_oids:
            if oid not in target_oids:
                differences.append(f"large object {oid}: missing on the target")
                continue
            want, got = _digest(src, oid), _digest(tgt, oid)
            if want != got:
                differences.append(
                    f"large object {oid}: {want.size} bytes md5 {want.md5} on the source, "
                    f"{got.size} bytes md5 {got.md5} on the target"
                )
        differences += [f"large object {oid}: only on the target" for oid in sorted(target_oids - set(source_oids))]
    return differences
