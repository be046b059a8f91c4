"""What the pre-cutover checklist reads from the live systems for `CutoverChecklistOperator`: every PgBouncer,
the sessions connected straight to the source, other pauses of the migration, the forward sink's dead
letters. Each reading is (ok, detail) for `cutover.checklist.evaluate_checklist`, which stays pure."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from pgmigrate.operators.cutover_base import CutoverStepOperator, Migration


def pgbouncer_check(op: CutoverStepOperator, m: Migration) -> tuple[bool, str]:
    """Every PgBouncer routes the database to the source, none paused, its routes file agreeing."""
    from pgmigrate.cutover.routing.routes import Route

    try:
        routing = op.routing(m)
        problems = routing.problems_before_pause(Route(m.source.host, m.source.port, m.source.dbname))
    except AirflowFailException as exc:
        return False, str(exc)
    if problems:
        return False, "; ".join(problems)
    return True, f"{', '.join(routing.names)} route {m.database} to the source, not paused, routes files agree"


def direct_session_check(op: CutoverStepOperator, m: Migration) -> tuple[bool, str]:
    """Sessions on the source that bypass PgBouncer: their writes would not follow the switch."""
    from pgmigrate.cutover.fence import direct_sessions

    try:
        pids = op.routing(m).server_pids()
    except Exception as exc:
        return False, f"cannot read PgBouncer's server connections: {exc}"
    with m.source.connect(autocommit=True) as conn:
        sessions = direct_sessions(conn, pids, m.source.user)
    if not sessions:
        return True, "every client session on the source comes through PgBouncer"
    listed = "; ".join(s.describe() for s in sessions[:10])
    if m.run.allow_direct_sessions:
        return True, (
            f"{len(sessions)} direct sessions allowed (allow_direct_sessions): {listed}. The cutover "
            "ends those of writing roles and aborts if one writes after the drain point"
        )
    return False, (
        f"{len(sessions)} sessions connect straight to the source, not through PgBouncer: {listed}. "
        "Their writes would not follow the switch: move them to PgBouncer or stop them, or set "
        "allow_direct_sessions=true"
    )


def lease_check(op: CutoverStepOperator, m: Migration) -> tuple[bool, str]:
    """One pause of a migration at a time."""
    lease = op.lease_store().active(m.migration_id)
    if lease is None:
        return True, "no other pause of this migration"
    return False, (
        f"a {lease.purpose} pause of this migration is {lease.state} (lease {lease.lease_id}, DAG run "
        f"{lease.dag_run_id}): let it end first"
    )


def dead_letter_check(op: CutoverStepOperator, m: Migration) -> tuple[bool, str]:
    """Unacknowledged records in the forward sink's DLQ refuse the cutover (an unreadable DLQ too)."""
    from pgmigrate.recovery.dead_letters import checklist_detail, read_backlog

    try:
        backlog = read_backlog(op.kafka_cluster(), m.store.endpoint, m.names)
    except Exception as exc:
        op.log.warning("dead letter topic %s: %s", m.names.dead_letter_topic, exc)
        backlog = None
    return checklist_detail(m.migration_id, backlog)
