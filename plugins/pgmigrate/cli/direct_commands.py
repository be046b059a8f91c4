"""The subcommands of `scripts/migration` that answer from this terminal, without an Airflow run: they read the
control database, Kafka Connect, Kafka and both databases directly, so they work while Airflow is down
(`status`, `lag`, `list`, `compare`, `report`, `dlq`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from pgmigrate.cli.context import DEFAULTS, connect_client, kafka_cluster, migration_endpoints, state_or_complain
from pgmigrate.control.state import MigrationStateStore
from pgmigrate.core.naming import MigrationNames
from pgmigrate.kafka.connect_errors import ConnectError
from pgmigrate.kafka.connector_status import assess_connector
from pgmigrate.stream.lag import read_lag


def cmd_status(args: argparse.Namespace) -> int:
    store = MigrationStateStore(DEFAULTS["control"])
    state = state_or_complain(store, args.migration_id, ensure_schema=True)
    if state is None:
        return 2
    names = MigrationNames(args.migration_id)
    print(f"migration {args.migration_id}: phase {state['phase']} (updated {state['updated_at']:%Y-%m-%d %H:%M:%S %Z})")
    print(f"  slot {state['slot_name']}, publication {state['publication_name']}")
    connect = connect_client()
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
        source, target = migration_endpoints(state)
        print(f"  now: {read_lag(source, target, names, kafka_cluster()).describe()}")
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
    state = state_or_complain(MigrationStateStore(DEFAULTS["control"]), args.migration_id)
    if state is None:
        return 2
    source, target = migration_endpoints(state)
    names = MigrationNames(args.migration_id)
    if state["phase"] in ("cut_over", "rolling_back"):
        reverse = read_lag(target, source, names.reversed(), kafka_cluster())
        print(f"reverse (target -> source): {reverse.describe()}")
    print(f"forward (source -> target): {read_lag(source, target, names, kafka_cluster()).describe()}")
    return 0


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


def cmd_compare(args: argparse.Namespace) -> int:
    """The data compare, now, from this terminal (no Airflow run): the differing keys, exit 1 if any."""
    from pgmigrate.core.migration_tables import resolve_tables
    from pgmigrate.core.params import MigrationParams, parse_table_name
    from pgmigrate.validate.row_diff import diff_table, format_diff

    state = state_or_complain(MigrationStateStore(DEFAULTS["control"]), args.migration_id)
    if state is None:
        return 2
    params = MigrationParams.from_dict(state["params"])
    source, target = migration_endpoints(state)
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
    from pgmigrate.core.artifacts import resolve
    from pgmigrate.report.migration_report import write_report
    from pgmigrate.report.report_data import UnknownMigration, collect_report_data, default_report_dir

    try:
        data = collect_report_data(DEFAULTS["control"], args.migration_id)
    except UnknownMigration as exc:
        print(str(exc), file=sys.stderr)
        return 2
    paths = write_report(data, resolve(args.output, "--output") if args.output else default_report_dir())
    print(f"markdown: {paths['markdown']}")
    print(paths["html"])
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    """List the sink's dead letters (table, key, error); `--resync` re-reads exactly their keys from the
    source, `--ack` acknowledges them once those rows equal the source. Exit 1 while any is unacknowledged."""
    from pgmigrate.recovery import dead_letters as dl
    from pgmigrate.recovery.dead_letter_resync import differing_keys, request_keys_resync

    store = MigrationStateStore(DEFAULTS["control"])
    state = state_or_complain(store, args.migration_id, ensure_schema=True)
    if state is None:
        return 2
    names = MigrationNames(args.migration_id)
    backlog = dl.read_backlog(kafka_cluster(), DEFAULTS["control"], names)
    letters = dl.read_dead_letters(kafka_cluster(), names, backlog, everything=args.all)
    print(dl.format_dead_letters(args.migration_id, letters, backlog, args.limit), flush=True)
    if not (args.resync or args.ack):
        return 1 if backlog.unacknowledged else 0
    pending = letters if not args.all else dl.read_dead_letters(kafka_cluster(), names, backlog)
    by_table = dl.keys_by_table(pending)
    source, target = migration_endpoints(state)
    if args.resync:
        connect = connect_client()
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
