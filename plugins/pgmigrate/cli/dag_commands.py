"""The subcommands of `scripts/migration` that trigger a DAG through Airflow's REST API and follow it (so the run
shows in the UI too): exit 0 when it succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from pgmigrate.cli.context import follow_dag


def follow_switch(dag_id: str, args: argparse.Namespace, **own_conf: Any) -> int:
    """Run `pg_cutover` or `pg_rollback`: its own conf, then the options both take (`main._add_switch_options`)."""
    conf = {
        "migration_id": args.migration_id,
        **own_conf,
        "max_pause_seconds": args.max_pause_seconds,
        "allow_direct_sessions": args.allow_direct_sessions,
    }
    if args.pgbouncer:
        conf["pgbouncer_conn_ids"] = args.pgbouncer
    return follow_dag(dag_id, conf)


def cmd_cutover(args: argparse.Namespace) -> int:
    return follow_switch("pg_cutover", args, backup=not args.no_backup, dry_run=args.dry_run)


def cmd_rollback(args: argparse.Namespace) -> int:
    return follow_switch("pg_rollback", args, reason=args.reason, force=args.force)


def cmd_halt(args: argparse.Namespace) -> int:
    return follow_dag("pg_migration_halt", {"migration_id": args.migration_id, "reason": args.reason})


def cmd_restart(args: argparse.Namespace) -> int:
    return follow_dag("pg_migration_restart", {"migration_id": args.migration_id})


def cmd_resync(args: argparse.Namespace) -> int:
    return follow_dag("pg_migration_resync", {"migration_id": args.migration_id, "tables": args.table})


def cmd_recover(args: argparse.Namespace) -> int:
    return follow_dag("pg_migration_recover", {"migration_id": args.migration_id})


def cmd_schema_sync(args: argparse.Namespace) -> int:
    return follow_dag("pg_migration_schema_sync", {"migration_id": args.migration_id})


def cmd_teardown(args: argparse.Namespace) -> int:
    return follow_dag("pg_migration_teardown", {"migration_id": args.migration_id, "force": args.force})


def cmd_validate(args: argparse.Namespace) -> int:
    conf = {
        "migration_id": args.migration_id,
        "tables": args.table or [],
        "mode": args.mode,
        "sample_size": args.sample_size,
    }
    rc = follow_dag("pg_validate", conf)
    from pgmigrate.core.artifacts import location
    from pgmigrate.report.report_data import default_report_dir

    print(f"report: {location(default_report_dir() / f'{args.migration_id}-report.html')}")
    return rc
