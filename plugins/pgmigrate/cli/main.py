"""`scripts/migration`: the on-call CLI. Reads the migration's state record, Kafka Connect and the
databases directly, so it answers even when Airflow is down.

    scripts/migration status --migration-id demo
    scripts/migration lag --migration-id demo
    scripts/migration list
    scripts/migration cutover --migration-id demo [--dry-run] [--no-backup] [--max-pause-seconds 10]
                              [--pgbouncer pgbouncer_admin --pgbouncer pgbouncer_admin_2] [--allow-direct-sessions]
    scripts/migration rollback --migration-id demo --reason "..." [--force] [--pgbouncer …]
    scripts/migration halt --migration-id demo --reason "..."   |   restart   |   teardown [--force]
    scripts/migration resync --migration-id demo --table public.orders [--table …]
    scripts/migration recover --migration-id demo        (Kafka lost its data)
    scripts/migration validate --migration-id demo [--table public.orders] [--mode sample]
    scripts/migration compare --migration-id demo [--table public.orders]
    scripts/migration report --migration-id demo [--output DIR]
    scripts/migration dlq --migration-id demo [--all] [--resync | --ack [--wait 60]]

`cutover` and `rollback` trigger the DAG through Airflow's REST API and follow it (so it shows in the
UI too), exit 0 when it succeeded and 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connect_client import ConnectClient, ConnectError
from pgmigrate.kafka.connector_status import assess_connector
from pgmigrate.stream.lag import read_lag

# The local stack's defaults; override with --control-dsn style flags for another environment.
DEFAULTS = {
    "control": PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres"),
    "connect_url": "http://127.0.0.1:8083",
    "bootstrap": "127.0.0.1:9092",
    "airflow_url": os.environ.get("PGMIGRATE_AIRFLOW_URL", "http://127.0.0.1:8080"),
}


def _endpoint_from_params(params: dict[str, Any], key: str, default_conn_id: str) -> PgEndpoint:
    """The migration's source/target, from the Airflow connection named in its params. The CLI runs
    beside Airflow (scripts/migration sets up its environment) and reads connections like
    `airflow connections get` does, so it works while the API server is down."""
    from airflow.models.connection import Connection

    conn_id = params.get(key) or default_conn_id
    return PgEndpoint.from_airflow_connection(Connection.get_connection_from_secrets(conn_id))


def _state_or_complain(store: MigrationStateStore, migration_id: str, ensure_schema: bool = False) -> dict | None:
    """The migration's state record, or None after telling the user on stderr that there is none."""
    if ensure_schema:
        store.ensure_schema()
    state = store.get(migration_id)
    if state is None:
        print(f"no migration {migration_id!r} in the control database (scripts/migration list)", file=sys.stderr)
    return state


def cmd_status(args: argparse.Namespace) -> int:
    store = MigrationStateStore(DEFAULTS["control"])
    state = _state_or_complain(store, args.migration_id, ensure_schema=True)
    if state is None:
        return 2
    names = MigrationNames(args.migration_id)
    print(f"migration {args.migration_id}: phase {state['phase']} (updated {state['updated_at']:%Y-%m-%d %H:%M:%S %Z})")
    print(f"  slot {state['slot_name']}, publication {state['publication_name']}")
    connect = ConnectClient(DEFAULTS["connect_url"], timeout=5, retries=1)
    reverse = names.reversed()
    for name in (names.source_connector, names.sink_connector, reverse.source_connector, reverse.sink_connector):
        try:
            status = connect.status_or_none(name)
            if status is None and name in (reverse.source_connector, reverse.sink_connector):
                continue  # reverse replication exists only from cutover on
            print(f"  {assess_connector(name, status)[1]}")
        except ConnectError as exc:
            print(f"  {name}: cannot ask Kafka Connect ({exc})")
    if state["last_lag_seconds"] is not None:
        print(f"  last recorded lag {state['last_lag_seconds']:.1f}s at {state['last_lag_at']:%H:%M:%S}")
    if args.live:
        source = _endpoint_from_params(state["params"], "source_conn_id", "migration_source")
        target = _endpoint_from_params(state["params"], "target_conn_id", "migration_target")
        print(f"  now: {read_lag(source, target, names, DEFAULTS['bootstrap']).describe()}")
    if state["last_validation"]:
        tables = state["last_validation"].get("tables", [])
        bad = [t["table"] for t in tables if not t.get("ok")]
        print(
            f"  last validation: {len(tables) - len(bad)}/{len(tables)} tables identical"
            + (f"; differ: {bad}" if bad else "")
        )
    if state["last_error"]:
        print(f"  last error: {state['last_error']}")
    if args.json:
        print(json.dumps(state, default=str, indent=2))
    return 0


def cmd_lag(args: argparse.Namespace) -> int:
    state = _state_or_complain(MigrationStateStore(DEFAULTS["control"]), args.migration_id)
    if state is None:
        return 2
    source = _endpoint_from_params(state["params"], "source_conn_id", "migration_source")
    target = _endpoint_from_params(state["params"], "target_conn_id", "migration_target")
    names = MigrationNames(args.migration_id)
    if state["phase"] in ("cut_over", "rolling_back"):
        reverse = read_lag(target, source, names.reversed(), DEFAULTS["bootstrap"])
        print(f"reverse (target -> source): {reverse.describe()}")
    print(f"forward (source -> target): {read_lag(source, target, names, DEFAULTS['bootstrap']).describe()}")
    return 0


def _follow_dag(dag_id: str, conf: dict[str, Any]) -> int:
    """Trigger `dag_id`, print each task's state as it changes, exit 0 on success."""
    from pgmigrate.cli.airflow_api import AirflowApiClient

    api = AirflowApiClient(
        DEFAULTS["airflow_url"],
        os.environ.get("PGMIGRATE_AIRFLOW_USER", "admin"),
        os.environ.get("PGMIGRATE_AIRFLOW_PASSWORD", "admin"),
    )
    run_id = api.trigger_dag(dag_id, conf=conf)
    print(f"triggered {dag_id} run {run_id}; follow it in the UI: {DEFAULTS['airflow_url']}/dags/{dag_id}")
    seen: dict[str, str] = {}
    while True:
        for ti in api.task_instances(dag_id, run_id):
            state = ti["state"] or "scheduled"
            if seen.get(ti["task_id"]) != state:
                seen[ti["task_id"]] = state
                print(f"  {time.strftime('%H:%M:%S')} {ti['task_id']}: {state}", flush=True)
        run = api.get_dag_run(dag_id, run_id)
        if run["state"] in ("success", "failed"):
            print(f"{dag_id} {run['state']}")
            return 0 if run["state"] == "success" else 1
        time.sleep(1)


def cmd_cutover(args: argparse.Namespace) -> int:
    conf = {
        "migration_id": args.migration_id,
        "backup": not args.no_backup,
        "dry_run": args.dry_run,
        "max_pause_seconds": args.max_pause_seconds,
        "allow_direct_sessions": args.allow_direct_sessions,
    }
    if args.pgbouncer:
        conf["pgbouncer_conn_ids"] = args.pgbouncer
    return _follow_dag("pg_cutover", conf)


def cmd_rollback(args: argparse.Namespace) -> int:
    conf = {
        "migration_id": args.migration_id,
        "reason": args.reason,
        "force": args.force,
        "max_pause_seconds": args.max_pause_seconds,
        "allow_direct_sessions": args.allow_direct_sessions,
    }
    if args.pgbouncer:
        conf["pgbouncer_conn_ids"] = args.pgbouncer
    return _follow_dag("pg_rollback", conf)


def _add_switch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pause-seconds", type=float, default=10)
    parser.add_argument(
        "--pgbouncer",
        action="append",
        metavar="CONN_ID",
        help="Airflow connection of a PgBouncer clients use; repeat for each (default: the DAG's list)",
    )
    parser.add_argument(
        "--allow-direct-sessions",
        action="store_true",
        help="go ahead although sessions connect straight to the side clients leave (they are ended, "
        "their roles made read-only, and a write after the drain point aborts)",
    )


def cmd_halt(args: argparse.Namespace) -> int:
    return _follow_dag("pg_migration_halt", {"migration_id": args.migration_id, "reason": args.reason})


def cmd_restart(args: argparse.Namespace) -> int:
    return _follow_dag("pg_migration_restart", {"migration_id": args.migration_id})


def cmd_resync(args: argparse.Namespace) -> int:
    return _follow_dag("pg_migration_resync", {"migration_id": args.migration_id, "tables": args.table})


def cmd_recover(args: argparse.Namespace) -> int:
    return _follow_dag("pg_migration_recover", {"migration_id": args.migration_id})


def cmd_schema_sync(args: argparse.Namespace) -> int:
    return _follow_dag("pg_migration_schema_sync", {"migration_id": args.migration_id})


def cmd_teardown(args: argparse.Namespace) -> int:
    return _follow_dag("pg_migration_teardown", {"migration_id": args.migration_id, "force": args.force})


def cmd_list(args: argparse.Namespace) -> int:
    store = MigrationStateStore(DEFAULTS["control"])
    store.ensure_schema()
    rows = sorted(store.migrations(), key=lambda r: r["updated_at"], reverse=True)
    if not rows:
        print("no migrations recorded")
    for row in rows:
        lag = row["last_lag_seconds"]
        lag_text = "-" if lag is None else f"{lag:.1f}s"
        updated = f"{row['updated_at']:%Y-%m-%d %H:%M:%S}"
        print(f"{row['migration_id']:<30} {row['phase']:<22} lag {lag_text:<8} updated {updated}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    conf = {
        "migration_id": args.migration_id,
        "tables": args.table or [],
        "mode": args.mode,
        "sample_size": args.sample_size,
    }
    rc = _follow_dag("pg_validate", conf)
    from pgmigrate.report.report_data import default_report_dir

    print(f"report: {default_report_dir() / f'{args.migration_id}-report.html'}")
    return rc


def cmd_compare(args: argparse.Namespace) -> int:
    """The data compare, now, from this terminal (no Airflow run): the differing keys, exit 1 if any."""
    from pgmigrate.core.migration_tables import resolve_tables
    from pgmigrate.core.params import MigrationParams, parse_table_name
    from pgmigrate.validate.row_diff import diff_table, format_diff

    state = _state_or_complain(MigrationStateStore(DEFAULTS["control"]), args.migration_id)
    if state is None:
        return 2
    params = MigrationParams.from_dict(state["params"])
    source = _endpoint_from_params(state["params"], "source_conn_id", "migration_source")
    target = _endpoint_from_params(state["params"], "target_conn_id", "migration_target")
    tables = resolve_tables(source, params)
    if args.table:
        wanted = {".".join(parse_table_name(t)) for t in args.table}
        unknown = wanted - {t.ref.qualified for t in tables}
        if unknown:
            print(f"not tables of {args.migration_id}: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        tables = [t for t in tables if t.ref.qualified in wanted]
    diffs = []
    for table in tables:
        diffs.append(diff_table(source, target, table, mode=args.mode, sample_size=args.sample_size))
        print(format_diff([diffs[-1]]), flush=True)
    differing = [d for d in diffs if not d.ok]
    print(
        f"{len(diffs) - len(differing)}/{len(diffs)} tables identical"
        + (
            f"; resync the differing ones: scripts/migration resync --migration-id {args.migration_id} "
            + " ".join(f"--table {d.table.qualified}" for d in differing)
            if differing
            else ""
        )
    )
    return 1 if differing else 0


def cmd_report(args: argparse.Namespace) -> int:
    from pgmigrate.report.migration_report import write_report
    from pgmigrate.report.report_data import UnknownMigration, collect_report_data, default_report_dir

    try:
        data = collect_report_data(DEFAULTS["control"], args.migration_id)
    except UnknownMigration as exc:
        print(str(exc), file=sys.stderr)
        return 2
    paths = write_report(data, Path(args.output) if args.output else default_report_dir())
    print(f"markdown: {paths['markdown']}")
    print(paths["html"])
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    """List the sink's dead letters (table, key, error); `--resync` re-reads exactly their keys from the
    source, `--ack` acknowledges them once those rows equal the source. Exit 1 while any is unacknowledged."""
    from pgmigrate.recovery import dead_letters as dl
    from pgmigrate.recovery.dead_letter_resync import differing_keys, request_keys_resync

    store = MigrationStateStore(DEFAULTS["control"])
    state = _state_or_complain(store, args.migration_id, ensure_schema=True)
    if state is None:
        return 2
    names = MigrationNames(args.migration_id)
    backlog = dl.read_backlog(DEFAULTS["bootstrap"], DEFAULTS["control"], names)
    letters = dl.read_dead_letters(DEFAULTS["bootstrap"], names, backlog, everything=args.all)
    print(dl.format_dead_letters(args.migration_id, letters, backlog, args.limit), flush=True)
    if not (args.resync or args.ack):
        return 1 if backlog.unacknowledged else 0
    pending = letters if not args.all else dl.read_dead_letters(DEFAULTS["bootstrap"], names, backlog)
    by_table = dl.keys_by_table(pending)
    source = _endpoint_from_params(state["params"], "source_conn_id", "migration_source")
    target = _endpoint_from_params(state["params"], "target_conn_id", "migration_target")
    if args.resync:
        connect = ConnectClient(DEFAULTS["connect_url"], timeout=5, retries=1)
        name = names.source_connector
        connector = connect.state_or_missing(name)
        if connector != "RUNNING":
            print(
                f"{name} is {connector}: it cannot re-read rows. Run scripts/migration restart --migration-id "
                f"{args.migration_id} first, then this again.",
                file=sys.stderr,
            )
            return 1
        result = request_keys_resync(source, target, names, by_table)
        store.record_event(
            args.migration_id,
            "dead_letters",
            f"resync of {result['keys']} dead-lettered key(s) signalled ({result['signal_id']})",
            **result,
        )
        print(
            f"resync {result['signal_id']}: {result['keys']} key(s) of {', '.join(result.get('tables', []))} "
            f"deleted on the target and re-read from the source by {name}. When they match, acknowledge: "
            f"scripts/migration dlq --migration-id {args.migration_id} --ack --wait 120"
        )
        return 0
    deadline = time.monotonic() + args.wait
    while (differing := differing_keys(source, target, by_table)) and time.monotonic() < deadline:
        time.sleep(2)
    if differing and not args.force:
        print(
            f"not acknowledged: these keys still differ from the source: {differing}. Fix the cause, run "
            f"scripts/migration dlq --migration-id {args.migration_id} --resync, then --ack again "
            "(--force acknowledges anyway).",
            file=sys.stderr,
        )
        return 1
    count = dl.acknowledge(DEFAULTS["control"], args.migration_id, backlog, args.note or "")
    print(
        f"acknowledged {count} dead letter(s); their keys match the source"
        + (" (forced)" if differing else "")
        + ". The P0 dead_letters alert resolves on the next monitor run."
    )
    return 0


def _add_data_selection(parser: argparse.ArgumentParser) -> None:
    """What `validate` and `compare` compare: the migration, its tables, full or sampled."""
    parser.add_argument("--migration-id", required=True)
    parser.add_argument("--table", action="append", help="schema.table (repeat; default all)")
    parser.add_argument("--mode", choices=("full", "sample"), default="full")
    parser.add_argument("--sample-size", type=int, default=1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/migration", description="On-call CLI for PostgreSQL migrations")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="phase, connectors, lag and last validation of one migration")
    status.add_argument("--migration-id", required=True)
    status.add_argument("--live", action="store_true", help="also measure the lag now")
    status.add_argument("--json", action="store_true", help="also print the whole state record as JSON")
    status.set_defaults(func=cmd_status)
    listing = sub.add_parser("list", help="every migration in the control database")
    listing.set_defaults(func=cmd_list)
    lag = sub.add_parser("lag", help="end-to-end, consumer and slot lag now (both directions after cutover)")
    lag.add_argument("--migration-id", required=True)
    lag.set_defaults(func=cmd_lag)
    cutover = sub.add_parser("cutover", help="run pg_cutover and follow it")
    cutover.add_argument("--migration-id", required=True)
    cutover.add_argument("--no-backup", action="store_true", help="skip the pg_dump of the source")
    cutover.add_argument("--dry-run", action="store_true", help="pause, drain, verify, resume; no switch")
    _add_switch_options(cutover)
    cutover.set_defaults(func=cmd_cutover)
    rollback = sub.add_parser("rollback", help="run pg_rollback and follow it")
    rollback.add_argument("--migration-id", required=True)
    rollback.add_argument("--reason", required=True, help="why (goes in the rollback report)")
    rollback.add_argument("--force", action="store_true", help="skip the drain (target gone); may lose writes")
    _add_switch_options(rollback)
    rollback.set_defaults(func=cmd_rollback)
    halt = sub.add_parser("halt", help="pause the live pipeline (P0), keep slots and offsets; run pg_migration_halt")
    halt.add_argument("--migration-id", required=True)
    halt.add_argument("--reason", required=True)
    halt.set_defaults(func=cmd_halt)
    restart = sub.add_parser("restart", help="connectors back to RUNNING (recreate, resume, restart failed tasks)")
    restart.add_argument("--migration-id", required=True)
    restart.set_defaults(func=cmd_restart)
    resync = sub.add_parser("resync", help="copy tables again while streaming continues; run pg_migration_resync")
    resync.add_argument("--migration-id", required=True)
    resync.add_argument("--table", action="append", required=True, help="schema.table (repeat for several)")
    resync.set_defaults(func=cmd_resync)
    recover = sub.add_parser(
        "recover",
        help="after Kafka lost its data: redeploy, re-snapshot, remove lost deletes, "
        "validate; run pg_migration_recover",
    )
    recover.add_argument("--migration-id", required=True)
    recover.set_defaults(func=cmd_recover)
    schema_sync = sub.add_parser(
        "schema-sync",
        help="apply DDL run on the source to the target (additive) or halt "
        "naming the statement; run pg_migration_schema_sync",
    )
    schema_sync.add_argument("--migration-id", required=True)
    schema_sync.set_defaults(func=cmd_schema_sync)
    teardown = sub.add_parser("teardown", help="remove connectors, slots, publications, topics of a migration")
    teardown.add_argument("--migration-id", required=True)
    teardown.add_argument("--force", action="store_true", help="also when the migration is still streaming")
    teardown.set_defaults(func=cmd_teardown)
    validate = sub.add_parser("validate", help="run pg_validate (schema, row diff, GE, report) and follow it")
    _add_data_selection(validate)
    validate.set_defaults(func=cmd_validate)
    compare = sub.add_parser("compare", help="compare the data now and print the differing keys (exit 1 if any)")
    _add_data_selection(compare)
    compare.set_defaults(func=cmd_compare)
    report = sub.add_parser("report", help="write the HTML + markdown report of a migration; prints the HTML path")
    report.add_argument("--migration-id", required=True)
    report.add_argument("--output", help="directory (default $PGMIGRATE_REPORT_DIR or .stack/reports)")
    report.set_defaults(func=cmd_report)
    dlq = sub.add_parser("dlq", help="dead letters of the sink (dead_letter=true): list, --resync their keys, --ack")
    dlq.add_argument("--migration-id", required=True)
    dlq.add_argument("--all", action="store_true", help="also list records acknowledged earlier")
    dlq.add_argument("--limit", type=int, default=50, help="records to print (default 50)")
    action = dlq.add_mutually_exclusive_group()
    action.add_argument("--resync", action="store_true", help="re-read the unacknowledged keys from the source")
    action.add_argument("--ack", action="store_true", help="acknowledge them once their rows match the source")
    dlq.add_argument("--wait", type=float, default=0, help="--ack: wait up to this many seconds for the rows to match")
    dlq.add_argument("--force", action="store_true", help="--ack even though rows still differ")
    dlq.add_argument("--note", help="--ack: what was fixed (goes in the timeline)")
    dlq.set_defaults(func=cmd_dlq)
    args = parser.parse_args(argv)
    return args.func(args)
