"""Pure rules of the cutover (no servers): the pre-cutover checklist, cutover params, the rollback report."""

from datetime import UTC, datetime

import pytest

from pgmigrate.core.params import CutoverParams, InvalidParams, RollbackParams
from pgmigrate.cutover.checklist import evaluate_checklist, format_checklist
from pgmigrate.report.rollback_report import RollbackFacts, render_rollback_report

pytestmark = pytest.mark.unit

STREAMING = {"phase": "streaming"}


def checklist(**overrides):
    args = dict(
        state=STREAMING,
        end_to_end_lag=0.8,
        native_lag=None,
        native_expected=False,
        max_lag_seconds=5,
        connectors_state="running",
        connectors_detail="both RUNNING",
        pgbouncer=(True, "2 PgBouncers route shop to the source"),
        pre_validation=(True, "3 tables identical"),
    )
    args.update(overrides)
    return {i.name: i for i in evaluate_checklist(**args)}


def test_a_streaming_caught_up_validated_migration_passes():
    items = checklist()
    assert all(i.ok for i in items.values()), format_checklist(list(items.values()))


@pytest.mark.parametrize(
    ("overrides", "failing", "text"),
    [
        ({"state": {**STREAMING, "phase": "snapshot_copied"}}, "migration_streaming", "'snapshot_copied'"),
        ({"end_to_end_lag": 12.0}, "lag", "12.0s"),
        ({"end_to_end_lag": None}, "lag", "no heartbeat"),
        ({"native_expected": True, "native_lag": None}, "lag", "native subscription not streaming"),
        ({"pre_validation": (False, "differences in public.a")}, "pre_validation", "public.a"),
        ({"connectors_state": "failed", "connectors_detail": "sink FAILED: boom"}, "connectors", "boom"),
        ({"pgbouncer": (False, "pgbouncer_admin_2 routes shop to 127.0.0.1:5434/shop")}, "pgbouncer", "5434"),
        ({"direct_sessions": (False, "1 direct session: cron")}, "direct_sessions", "cron"),
        ({"pause_lease": (False, "another pause is armed")}, "pause_lease", "armed"),
    ],
)
def test_each_unmet_condition_refuses_with_its_reason(overrides, failing, text):
    items = checklist(**overrides)
    assert [n for n, i in items.items() if not i.ok] == [failing]
    assert text in items[failing].detail


def test_cutover_and_rollback_params_say_what_is_wrong():
    assert CutoverParams.from_dict({"migration_id": "shop"}).max_pause_seconds == 10
    with pytest.raises(InvalidParams, match="max_pause_seconds"):
        CutoverParams.from_dict({"migration_id": "shop", "max_pause_seconds": 0})
    with pytest.raises(InvalidParams, match="reason is required"):
        RollbackParams.from_dict({"migration_id": "shop", "reason": "  "})


def test_rollback_report_names_reason_times_and_replayed_writes():
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    events = [{"at": at, "phase": "cut_over", "message": "switched | paused 1.2s"}]
    text = render_rollback_report(RollbackFacts("shop", "bad latency", False, 21.5, 1.4, 345), 0.9, events)
    assert "bad latency" in text and "21.50 s" in text and "345" in text and "2026-11-25 12:00:00" in text
    assert "switched \\| paused" in text  # table cells escaped
