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

This module is the command line itself (subcommands and options); what they run is in `direct_commands`
(answered from this terminal) and `dag_commands` (an Airflow run, followed), on `context`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pgmigrate.cli.dag_commands import (
    cmd_cutover,
    cmd_halt,
    cmd_recover,
    cmd_restart,
    cmd_resync,
    cmd_rollback,
    cmd_schema_sync,
    cmd_teardown,
    cmd_validate,
)
from pgmigrate.cli.direct_commands import cmd_compare, cmd_dlq, cmd_lag, cmd_list, cmd_report, cmd_status


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


def _add_data_selection(parser: argparse.ArgumentParser) -> None:
    """What `validate` and `compare` compare: the migration's tables, full or sampled."""
    parser.add_argument("--table", action="append", help="schema.table (repeat; default all)")
    parser.add_argument("--mode", choices=("full", "sample"), default="full")
    parser.add_argument("--sample-size", type=int, default=1000)


def _migration_command(
    sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], summary: str
) -> argparse.ArgumentParser:
    """A subcommand about one migration (`--migration-id`, required) that runs `func`; every one but `list`."""
    parser = sub.add_parser(name, help=summary)
    parser.add_argument("--migration-id", required=True)
    parser.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/migration", description="On-call CLI for PostgreSQL migrations")
    sub = parser.add_subparsers(dest="command", required=True)
    status = _migration_command(
        sub, "status", cmd_status, "phase, connectors, lag and last validation of one migration"
    )
    status.add_argument("--live", action="store_true", help="also measure the lag now")
    status.add_argument("--json", action="store_true", help="also print the whole state record as JSON")
    listing = sub.add_parser("list", help="every migration in the control database")
    listing.set_defaults(func=cmd_list)
    _migration_command(sub, "lag", cmd_lag, "end-to-end, consumer and slot lag now (both directions after cutover)")
    cutover = _migration_command(sub, "cutover", cmd_cutover, "run pg_cutover and follow it")
    cutover.add_argument("--no-backup", action="store_true", help="skip the pg_dump of the source")
    cutover.add_argument("--dry-run", action="store_true", help="pause, drain, verify, resume; no switch")
    _add_switch_options(cutover)
    rollback = _migration_command(sub, "rollback", cmd_rollback, "run pg_rollback and follow it")
    rollback.add_argument("--reason", required=True, help="why (goes in the rollback report)")
    rollback.add_argument("--force", action="store_true", help="skip the drain (target gone); may lose writes")
    _add_switch_options(rollback)
    halt = _migration_command(
        sub, "halt", cmd_halt, "pause the live pipeline (P0), keep slots and offsets; run pg_migration_halt"
    )
    halt.add_argument("--reason", required=True)
    _migration_command(
        sub, "restart", cmd_restart, "connectors back to RUNNING (recreate, resume, restart failed tasks)"
    )
    resync = _migration_command(
        sub, "resync", cmd_resync, "copy tables again while streaming continues; run pg_migration_resync"
    )
    resync.add_argument("--table", action="append", required=True, help="schema.table (repeat for several)")
    _migration_command(
        sub,
        "recover",
        cmd_recover,
        "after Kafka lost its data: redeploy, re-snapshot, remove lost deletes, validate; run pg_migration_recover",
    )
    _migration_command(
        sub,
        "schema-sync",
        cmd_schema_sync,
        "apply DDL run on the source to the target (additive) or halt naming the statement; "
        "run pg_migration_schema_sync",
    )
    teardown = _migration_command(
        sub, "teardown", cmd_teardown, "remove connectors, slots, publications, topics of a migration"
    )
    teardown.add_argument("--force", action="store_true", help="also when the migration is still streaming")
    validate = _migration_command(
        sub, "validate", cmd_validate, "run pg_validate (schema, row diff, GE, report) and follow it"
    )
    _add_data_selection(validate)
    compare = _migration_command(
        sub, "compare", cmd_compare, "compare the data now and print the differing keys (exit 1 if any)"
    )
    _add_data_selection(compare)
    report = _migration_command(
        sub, "report", cmd_report, "write the HTML + markdown report of a migration; prints the HTML path"
    )
    report.add_argument(
        "--output",
        help="directory or URL (default $PGMIGRATE_ARTIFACTS_URL/reports, else $PGMIGRATE_REPORT_DIR, .stack/reports)",
    )
    dlq = _migration_command(
        sub, "dlq", cmd_dlq, "dead letters of the sink (dead_letter=true): list, --resync their keys, --ack"
    )
    dlq.add_argument("--all", action="store_true", help="also list records acknowledged earlier")
    dlq.add_argument("--limit", type=int, default=50, help="records to print (default 50)")
    action = dlq.add_mutually_exclusive_group()
    action.add_argument("--resync", action="store_true", help="re-read the unacknowledged keys from the source")
    action.add_argument("--ack", action="store_true", help="acknowledge them once their rows match the source")
    dlq.add_argument("--wait", type=float, default=0, help="--ack: wait up to this many seconds for the rows to match")
    dlq.add_argument("--force", action="store_true", help="--ack even though rows still differ")
    dlq.add_argument("--note", help="--ack: what was fixed (goes in the timeline)")
    args = parser.parse_args(argv)
    return args.func(args)
