"""`scripts/migration`: the on-call CLI. Reads the migration's state record, Kafka Connect and the
databases directly, so it answers even when Airflow is down.

    scripts/migration status --migration-id demo
    scripts/migration list
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pgmigrate.connect_client import ConnectClient, ConnectError
from pgmigrate.connector_status import assess_connector
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.lag import read_lag
from pgmigrate.naming import MigrationNames
from pgmigrate.state import MigrationStateStore

# The local stack's defaults; override with --control-dsn style flags for another environment.
DEFAULTS = {
    "control": PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres"),
    "connect_url": "http://127.0.0.1:8083",
    "bootstrap": "127.0.0.1:9092",
}


def _endpoint_from_params(params: dict[str, Any], key: str, default_conn_id: str) -> PgEndpoint:
    """The migration's source/target, from the Airflow connection named in its params. The CLI runs
    beside Airflow (scripts/migration sets up its environment) and reads connections like
    `airflow connections get` does, so it works while the API server is down."""
    from airflow.models.connection import Connection

    conn_id = params.get(key) or default_conn_id
    return PgEndpoint.from_airflow_connection(Connection.get_connection_from_secrets(conn_id))


def cmd_status(args: argparse.Namespace) -> int:
    store = MigrationStateStore(DEFAULTS["control"])
    store.ensure_schema()
    state = store.get(args.migration_id)
    if state is None:
        print(f"no migration {args.migration_id!r} in the control database (scripts/migration list)", file=sys.stderr)
        return 2
    names = MigrationNames(args.migration_id)
    print(f"migration {args.migration_id}: phase {state['phase']} (updated {state['updated_at']:%Y-%m-%d %H:%M:%S %Z})")
    print(f"  slot {state['slot_name']}, publication {state['publication_name']}")
    connect = ConnectClient(DEFAULTS["connect_url"], timeout=5, retries=1)
    for name in (names.source_connector, names.sink_connector):
        try:
            status = connect.get_status(name) if connect.exists(name) else None
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


def cmd_list(args: argparse.Namespace) -> int:
    store = MigrationStateStore(DEFAULTS["control"])
    store.ensure_schema()
    with DEFAULTS["control"].connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT migration_id, phase, updated_at, last_lag_seconds FROM migration ORDER BY updated_at DESC"
        ).fetchall()
    if not rows:
        print("no migrations recorded")
    for migration_id, phase, updated_at, lag in rows:
        lag_text = "-" if lag is None else f"{lag:.1f}s"
        print(f"{migration_id:<30} {phase:<22} lag {lag_text:<8} updated {updated_at:%Y-%m-%d %H:%M:%S}")
    return 0


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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
