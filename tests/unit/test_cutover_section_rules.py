"""Pure parts of the cutover's critical section (no servers): reading the origin's slot for writes after the
drain point, turning change-topic keys back into PostgreSQL text, positions, the pre-validation verdict, the
pause guard trigger's serialization, and how a settled lease puts clients back (fakes, labelled)."""

from __future__ import annotations

import base64
import importlib
import struct
from datetime import UTC, datetime, timedelta

import pytest

from pgmigrate.control.pause_lease import Lease
from pgmigrate.core.catalog import TableRef
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.params import CutoverParams, InvalidParams, RollbackParams
from pgmigrate.cutover.change_topics import ChangedKeys, key_texts, positions_from_json, positions_to_json, value_text
from pgmigrate.cutover.fence import changes_committed_after, is_platform_session, lsn_to_int
from pgmigrate.cutover.guard import Sides, settle
from pgmigrate.cutover.pre_validation import checklist_detail, reusable
from pgmigrate.cutover.routing.routes import Route
from pgmigrate.cutover.verification import KeyDifference, as_changes

pytestmark = pytest.mark.unit


def _begin(final_lsn: int) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, 0, 1)


def _relation(relid: int, namespace: str, name: str) -> bytes:
    names = namespace.encode() + b"\0" + name.encode() + b"\0"
    return b"R" + struct.pack(">I", relid) + names + b"d" + struct.pack(">h", 0)


def _change(kind: bytes, relid: int) -> bytes:
    return kind + struct.pack(">I", relid) + b"N"


def test_writes_after_the_drain_point_are_those_of_transactions_that_commit_after_it():
    point = lsn_to_int("0/3000000")
    messages = [
        _begin(point - 10),
        _relation(1, "public", "accounts"),
        _change(b"U", 1),
        b"C",  # drained: before the point
        _begin(point + 5),
        _relation(2, "pgmigrate", "heartbeat_x"),
        _change(b"U", 2),
        b"C",  # the platform's own
        _begin(point + 9),
        _change(b"I", 1),
        _change(b"D", 1),
        b"C",  # a writer outside PgBouncer
        _begin(point + 20),
        _relation(3, "public", "orders"),
        b"T" + struct.pack(">IbI", 1, 0, 3),
        b"C",  # a TRUNCATE counts too
    ]
    assert changes_committed_after(messages, point) == {"public.accounts": 2, "public.orders": 1}
    assert changes_committed_after(messages[:4], point) == {}


def test_lsn_text_orders_like_the_server():
    assert lsn_to_int("1/0") > lsn_to_int("0/FFFFFFFF")
    assert lsn_to_int("0/16B3748") == 0x16B3748


def test_platform_sessions_are_its_role_with_its_application_names():
    assert is_platform_session("migrator", "Debezium General", "migrator")
    assert is_platform_session("migrator", "pgmigrate-sink", "migrator")
    assert not is_platform_session("app", "Debezium General", "migrator")
    # A JDBC application with the driver's default name is an application, not the platform.
    assert not is_platform_session("migrator", "PostgreSQL JDBC Driver", "migrator")


@pytest.mark.parametrize(
    ("schema", "value", "text"),
    [
        ({"type": "int32"}, 42, "42"),
        ({"type": "string"}, "a'b", "a'b"),
        ({"type": "boolean"}, True, "true"),
        ({"type": "int32", "name": "io.debezium.time.Date"}, 19700, "2023-12-09"),
        (
            {"type": "int64", "name": "io.debezium.time.MicroTimestamp"},
            1_700_000_000_123_456,
            "2023-11-14 22:13:20.123456",
        ),
        ({"type": "int64", "name": "io.debezium.time.MicroTime"}, 3_723_000_001, "01:02:03.000001"),
        ({"type": "string", "name": "io.debezium.time.ZonedTimestamp"}, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ({"type": "bytes"}, base64.b64encode(b"\x01\xff").decode(), "\\x01ff"),
        (
            {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}},
            base64.b64encode((12345).to_bytes(2, "big", signed=True)).decode(),
            "123.45",
        ),
        ({"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}, {"scale": 1}, None),
    ],
)
def test_key_values_turn_back_into_postgresql_text(schema, value, text):
    assert value_text(schema, value) == text


def test_a_key_record_gives_its_primary_key_in_order():
    fields = [{"field": "id", "type": "int64"}, {"field": "region", "type": "string"}]
    key = {"schema": {"type": "struct", "fields": fields}, "payload": {"region": "eu", "id": 7}}
    assert key_texts(key, ["region", "id"]) == ("eu", "7")
    assert key_texts(key, ["missing"]) is None
    assert key_texts({"schema": {}, "payload": None}, ["id"]) is None


def test_positions_round_trip_through_json_with_dotted_topic_names():
    positions = {("pgmigrate_x.public.a", 0): 5, ("pgmigrate_x.my.schema.t", 3): 9}
    assert positions_from_json(positions_to_json(positions)) == positions


def test_differences_are_compared_again_whole_tables_included():
    a, b = TableRef("public", "a"), TableRef("public", "b")
    carried = as_changes([KeyDifference(a, ("1",), "changed"), KeyDifference(b, None, "changed", "3 rows vs 4")])
    assert carried.keys == {a: {("1",)}} and carried.whole_tables() == {b}
    merged = ChangedKeys(keys={a: {("2",)}})
    merged.add(carried)
    assert merged.keys[a] == {("1",), ("2",)} and merged.key_count == 2


def test_the_checklist_refuses_a_missing_failed_or_old_pre_validation():
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    fresh = {"at": (now - timedelta(minutes=5)).isoformat(), "ok": True, "tables": 4, "rows": 100}
    assert checklist_detail(fresh, 60, now)[0] is True
    assert checklist_detail(None, 60, now)[0] is False
    assert "differences" in checklist_detail({**fresh, "ok": False, "differences": ["public.a: 1 missing"]}, 60, now)[1]
    old = {**fresh, "at": (now - timedelta(minutes=90)).isoformat()}
    ok, detail = checklist_detail(old, 60, now)
    assert not ok and "max_validation_age_minutes=60" in detail
    assert reusable(fresh, 10, now) and not reusable(fresh, 0, now) and not reusable(old, 60, now)


def test_cutover_params_list_every_pgbouncer_and_refuse_bad_values():
    params = CutoverParams.from_dict({"migration_id": "shop"})
    assert params.pgbouncer_conn_ids == ("pgbouncer_admin", "pgbouncer_admin_2")
    assert CutoverParams.from_dict({"migration_id": "shop", "pgbouncer_conn_ids": ["a"]}).pgbouncer_conn_ids == ("a",)
    with pytest.raises(InvalidParams, match="pgbouncer_conn_ids"):
        CutoverParams.from_dict({"migration_id": "shop", "pgbouncer_conn_ids": "pgbouncer_admin"})
    with pytest.raises(InvalidParams, match="max_validation_age_minutes"):
        CutoverParams.from_dict({"migration_id": "shop", "max_validation_age_minutes": -1})
    assert RollbackParams.from_dict({"migration_id": "shop", "reason": "r"}).max_pause_seconds == 10


def test_the_pause_guard_trigger_serializes_to_an_importable_path():
    from pgmigrate.triggers.pause_guard import PauseGuardTrigger

    trigger = PauseGuardTrigger("shop", "manual__2026", "migration_control", 60.0, 3600.0)
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)


class FakeRouting:
    """Fake of `ClientRouting` (no PgBouncer): records what a settle asked of it."""

    def __init__(self) -> None:
        self.calls: list = []

    def resume(self) -> list[str]:
        self.calls.append("resume")
        return []

    def restore(self, route: Route) -> list[str]:
        self.calls.append(("restore", str(route)))
        return []


def _lease(state: str) -> Lease:
    plan = {
        "origin": {"conn_id": "s", "route": {"host": "127.0.0.1", "port": 5433, "dbname": "shop"}},
        "destination": {"conn_id": "t", "route": {"host": "127.0.0.1", "port": 5434, "dbname": "shop"}},
    }
    return Lease("shop:1", "shop", "run", "cutover", state, 10.0, plan=plan)


def test_a_settled_lease_puts_clients_where_its_state_says():
    sides = Sides(PgEndpoint("127.0.0.1", 5433, "shop", "u"), PgEndpoint("127.0.0.1", 5434, "shop", "u"))
    back = [("restore", "127.0.0.1:5433/shop")]
    for state, expected in (("expired", back), ("released", back), ("switched", ["resume"])):
        routing = FakeRouting()
        assert settle(_lease(state), routing, sides) == []
        assert routing.calls == expected
    with pytest.raises(ValueError, match="nothing decided"):
        settle(_lease("armed"), FakeRouting(), sides)


def test_a_difference_is_confirmed_only_when_applied_and_not_changed_since():
    from pgmigrate.cutover.verification import confirmed_differences

    a = TableRef("public", "a")
    row, whole = KeyDifference(a, ("1",), "changed"), KeyDifference(a, None, "changed")
    quiet = ChangedKeys(keys={a: {("2",)}})
    assert confirmed_differences([row], True, quiet) == [row]  # applied, and the origin left it alone
    assert confirmed_differences([row], False, quiet) == []  # the sink had not applied everything yet
    assert confirmed_differences([row], True, ChangedKeys(keys={a: {("1",)}})) == []  # changed again: in flight
    assert confirmed_differences([whole], True, ChangedKeys()) == [whole]
    assert confirmed_differences([whole], True, quiet) == []  # the table changed since


def test_the_pause_budget_bounds_every_statement_by_what_is_left():
    import time as clock

    from pgmigrate.cutover.section_plan import MIN_STEP_TIMEOUT_MS, RESTORE_RESERVE_SECONDS, PauseBudget

    budget = PauseBudget(2.0)
    first = budget.timeout_ms()
    assert first <= (2.0 - RESTORE_RESERVE_SECONDS) * 1000
    clock.sleep(0.2)
    assert budget.timeout_ms() < first
    assert PauseBudget(0.1).timeout_ms() == MIN_STEP_TIMEOUT_MS  # never 0: that would mean "no timeout"
