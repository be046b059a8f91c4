"""Least privilege and secrets on the real stack (issue #7): a migration run by non-superuser roles.

`lp_source` (LOGIN, and SELECT on one table only) and `lp_target` (LOGIN only) start short of what the
pipeline needs, the cutover and a rollback included: preflight must name each missing privilege and print the
exact statements as one block per server. An application role `lp_app` may write the source's tables, so the
fence's CREATEROLE and pg_signal_backend are asked for on both sides (the target's fence takes over the
source's application roles at rollback). The test runs exactly that block as a superuser, preflight then
passes, and `pg_migration` runs with those roles to streaming under a concurrent writer; the independent
comparison ends identical.

The second test greps everything the run left for the two roles' passwords: every try's task log, every
XCom value, the rendered template fields, the migration report (HTML and markdown) and the config Kafka
Connect returns for each connector of the migration (which must hold `${file:…}` references instead).

No keyless table here: its native channel needs CREATE SUBSCRIPTION, which PostgreSQL 15 allows only
superusers (preflight says so: tests/unit/test_privilege_rules.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from harness import (
    SOURCE_PORT,
    TARGET_PORT,
    ConcurrentWriter,
    airflow_api,
    conninfo,
    endpoint,
    run_dag,
    task_log,
    tear_down_migration,
    wait_until_identical,
)
from psycopg import sql

from devtools.databases import drop_database, recreate_database
from devtools.local_stack import connect_client
from pgmigrate.cli.airflow_api import AirflowApiError, put_postgres_connection
from pgmigrate.core.endpoints import PgEndpoint
from pgmigrate.core.naming import MigrationNames
from pgmigrate.core.params import MigrationParams
from pgmigrate.preflight.checks import run_preflight
from pgmigrate.report.migration_report import write_report
from pgmigrate.report.report_data import collect_report_data

MIGRATION_ID = "lp-e2e"
SRC_DB, DST_DB = "lp_src", "lp_dst"
SRC_CONN, DST_CONN = "lp_source", "lp_target"
SRC_ROLE, DST_ROLE = "lp_source", "lp_target"
SRC_PASSWORD, DST_PASSWORD = "lp-Src-s3cret-7f1", "lp-Dst-s3cret-9c4"
APP_ROLE, APP_PASSWORD = "lp_app", "lp-App-pw"  # an application's role on the source: the fence's business
PASSWORDS = (SRC_PASSWORD, DST_PASSWORD)
NAMES = MigrationNames(MIGRATION_ID)
CONNECT = connect_client()
CONTROL = PgEndpoint("127.0.0.1", 5435, "migration_control", "postgres", "postgres")
SOURCE = PgEndpoint("127.0.0.1", SOURCE_PORT, SRC_DB, SRC_ROLE, SRC_PASSWORD)
TARGET = PgEndpoint("127.0.0.1", TARGET_PORT, DST_DB, DST_ROLE, DST_PASSWORD)
SECRETS_DIR = Path(__file__).resolve().parents[2] / ".stack" / "secrets"  # the local stack's secrets_dir
# keep_ownership=false: the source's tables end up owned by lp_source (a publication needs it), which a
# non-superuser target role could give objects to only as its member; here the target role owns what it creates.
CONF = {"migration_id": MIGRATION_ID, "source_conn_id": SRC_CONN, "target_conn_id": DST_CONN, "keep_ownership": False}

SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, visits int NOT NULL DEFAULT 0);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 200) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,
                     amount numeric(12, 2) NOT NULL, note text);
INSERT INTO orders (customer_id, amount, note) SELECT g % 200 + 1, g * 1.25, repeat('x', g % 50)
FROM generate_series(1, 1000) g;
CREATE INDEX orders_customer ON orders (customer_id);
"""

# What preflight must print, in order, for the roles as created below (lp_source may already read customers).
EXPECTED_SOURCE = [
    f'ALTER ROLE "{SRC_ROLE}" REPLICATION;',
    f'GRANT CREATE ON DATABASE "{SRC_DB}" TO "{SRC_ROLE}";',
    f'GRANT SELECT ON "public"."orders" TO "{SRC_ROLE}";',
    f'GRANT SELECT ON SEQUENCE "public"."orders_id_seq" TO "{SRC_ROLE}";',
    f'ALTER TABLE "public"."customers" OWNER TO "{SRC_ROLE}";',
    f'ALTER TABLE "public"."orders" OWNER TO "{SRC_ROLE}";',
    # the cutover and a rollback: the rollback's setval, the reverse sink, the fence at cutover
    f'GRANT UPDATE ON SEQUENCE "public"."orders_id_seq" TO "{SRC_ROLE}";',
    f'GRANT SET ON PARAMETER session_replication_role TO "{SRC_ROLE}";',
    f'GRANT pg_read_all_stats TO "{SRC_ROLE}";',
    f'GRANT pg_signal_backend TO "{SRC_ROLE}";',
    f'ALTER ROLE "{SRC_ROLE}" CREATEROLE;',
]
EXPECTED_TARGET = [
    f'GRANT CREATE ON DATABASE "{DST_DB}" TO "{DST_ROLE}";',
    f'GRANT USAGE, CREATE ON SCHEMA "public" TO "{DST_ROLE}";',
    f'GRANT SET ON PARAMETER session_replication_role TO "{DST_ROLE}";',
    # the cutover and a rollback: the reverse slots, the fence at rollback (no target sequence exists yet)
    f'ALTER ROLE "{DST_ROLE}" REPLICATION;',
    f'GRANT pg_read_all_stats TO "{DST_ROLE}";',
    f'GRANT pg_signal_backend TO "{DST_ROLE}";',
    f'ALTER ROLE "{DST_ROLE}" CREATEROLE;',
    # roles: the grantees of the migrated tables exist on the target before the schema copy restores the grants
    f'CREATE ROLE "{APP_ROLE}" LOGIN;',
    f'CREATE ROLE "{SRC_ROLE}" LOGIN;',
]


def superuser(port: int, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(conninfo(port, dbname), autocommit=True)


def drop_role(port: int, role: str) -> None:
    """DROP OWNED first: a GRANT SET ON PARAMETER is a privilege on a shared object and blocks DROP ROLE."""
    with superuser(port) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def create_role(port: int, role: str, password: str) -> None:
    with superuser(port) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))


def forget() -> None:
    """What an earlier (interrupted) run left: pipeline, databases, roles, connections, state, routes."""
    from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch

    for port, folder in ((6432, "pgbouncer"), (6433, "pgbouncer2")):
        switch = PgBouncerRouteSwitch(
            PgEndpoint("127.0.0.1", port, "pgbouncer", "postgres", "postgres"),
            SECRETS_DIR.parent / folder / "routes.ini",
        )
        switch.resume(SRC_DB)
        switch.remove_route(SRC_DB)
    tear_down_migration(MIGRATION_ID, SRC_DB, DST_DB)
    source, target = endpoint(SOURCE_PORT, SRC_DB), endpoint(TARGET_PORT, DST_DB)
    drop_database(source)
    drop_database(target)
    drop_role(SOURCE_PORT, SRC_ROLE)
    drop_role(SOURCE_PORT, APP_ROLE)
    drop_role(TARGET_PORT, DST_ROLE)
    drop_role(TARGET_PORT, APP_ROLE)  # created there by preflight's `roles` fix
    drop_role(TARGET_PORT, SRC_ROLE)


def printed_block(message: str) -> dict[str, list[str]]:
    """The copy-pasteable block at the end of preflight's failure message, by its `-- on the …:` headings."""
    lines = message[message.index("Missing privileges: run as a superuser") :].splitlines()[1:]
    block: dict[str, list[str]] = {}
    heading = ""
    for line in lines:
        if line.startswith("-- on the "):
            heading = line
            block[heading] = []
        else:
            block[heading].append(line)
    return block


@pytest.fixture(scope="module")
def migration():
    """Preflight refuses the bare roles with the exact grants; after running them, pg_migration streams."""
    api = airflow_api()
    forget()
    recreate_database(endpoint(SOURCE_PORT, SRC_DB))
    recreate_database(endpoint(TARGET_PORT, DST_DB))
    with superuser(SOURCE_PORT, SRC_DB) as conn:
        conn.execute(SCHEMA)
    create_role(SOURCE_PORT, SRC_ROLE, SRC_PASSWORD)
    create_role(TARGET_PORT, DST_ROLE, DST_PASSWORD)
    create_role(SOURCE_PORT, APP_ROLE, APP_PASSWORD)
    with superuser(SOURCE_PORT, SRC_DB) as conn:  # part of what it needs: only the rest is printed
        conn.execute(sql.SQL("GRANT SELECT ON customers TO {}").format(sql.Identifier(SRC_ROLE)))
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders TO {}").format(sql.Identifier(APP_ROLE))
        )

    params = MigrationParams.from_dict(CONF)
    refused = run_preflight(SOURCE, TARGET, params)
    message = refused.failure_message()
    assert {r.name for r in refused.failed} == {
        "source_role.replication",
        "source_role.create",
        "source_role.select",
        "source_role.publish",
        "source_role.sequence_update",
        "source_role.session_replication_role",
        "source_role.read_all_stats",
        "source_role.signal_backend",
        "source_role.createrole",
        "target_role.create",
        "target_role.schema",
        "target_role.session_replication_role",
        "target_role.replication",
        "target_role.read_all_stats",
        "target_role.signal_backend",
        "target_role.createrole",
        "roles",
    }, message
    assert f"application roles {APP_ROLE} " in next(
        r.problem for r in refused.failed if r.name == "target_role.createrole"
    )
    block = printed_block(message)
    assert block == {
        f"-- on the source database '{SRC_DB}':": EXPECTED_SOURCE,
        f"-- on the target database '{DST_DB}':": EXPECTED_TARGET,
    }, message
    # The printed block is enough: run it as printed, and preflight passes.
    for port, dbname, statements in ((SOURCE_PORT, SRC_DB, EXPECTED_SOURCE), (TARGET_PORT, DST_DB, EXPECTED_TARGET)):
        with superuser(port, dbname) as conn:
            for statement in statements:
                conn.execute(statement)
    granted = run_preflight(SOURCE, TARGET, params)
    assert granted.ok, granted.failure_message()

    put_postgres_connection(api, SRC_CONN, SOURCE)
    put_postgres_connection(api, DST_CONN, TARGET)
    writer = ConcurrentWriter(
        SRC_DB,
        lambda i: [
            ("UPDATE customers SET visits = visits + 1 WHERE id = %s", (i % 200 + 1,)),
            ("INSERT INTO orders (customer_id, amount, note) VALUES (%s, %s, 'live')", (i % 200 + 1, i)),
        ],
        rate=10,
    )
    try:
        writer.start()
        run_id, run, states = run_dag(api, CONF)
        assert run["state"] == "success", f"pg_migration {run_id}: {states}"
        yield api, run_id, writer
    finally:
        writer.stop()
        forget()
        for conn_id in (SRC_CONN, DST_CONN):
            try:
                api.request("DELETE", f"/connections/{conn_id}")
            except AirflowApiError:
                pass


def test_non_superuser_roles_migrate_to_identical(migration):
    api, run_id, writer = migration
    with superuser(TARGET_PORT, DST_DB) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relname IN ('customers', 'orders')"
        ).fetchall()
    assert owners == [(DST_ROLE,)]  # the target role made them: no superuser anywhere in the pipeline
    with superuser(TARGET_PORT, DST_DB) as conn:  # the grants came with the schema copy
        grants = conn.execute(
            "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) "
            "FROM information_schema.role_table_grants WHERE grantee = %s GROUP BY 1 ORDER BY 1",
            (APP_ROLE,),
        ).fetchall()
    assert grants == [("customers", "DELETE,INSERT,SELECT,UPDATE"), ("orders", "DELETE,INSERT,SELECT,UPDATE")]
    writer.stop()
    assert not writer.errors, writer.errors[:3]
    assert writer.committed > 0
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}


PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
WORKLOAD = """\\set id random(1, 200)
UPDATE customers SET visits = visits + 1 WHERE id = :id;
INSERT INTO orders (customer_id, amount, note) VALUES (:id, 1.50, 'through pgbouncer');
"""
SWITCH_RUNS: dict[str, str] = {}  # dag_id -> run id, for the secrets grep


def _through_both_pgbouncers(tmp_path: Path, seconds: int) -> list:
    import subprocess

    script = tmp_path / "lp-workload.sql"
    script.write_text(WORKLOAD)
    return [
        subprocess.Popen(
            [
                PGBENCH,
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-n",
                "-c",
                "1",
                "-R",
                "20",
                "-T",
                str(seconds),
                "-f",
                str(script),
                SRC_DB,
            ],
            env={"PGPASSWORD": "postgres", "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for port in (6432, 6433)
    ]


def _failed(benches: list) -> int:
    import re

    failed = 0
    for bench in benches:
        output, _ = bench.communicate(timeout=300)
        assert bench.returncode == 0, output[-1500:]
        found = re.search(r"number of failed transactions: (\d+)", output)
        failed += int(found.group(1)) if found else 0
    return failed


def test_non_superuser_roles_cut_over_and_roll_back(migration, tmp_path):
    """The same roles take the migration through a cutover and a rollback under writes through both
    PgBouncers: reverse slots as lp_target, the source's sequences and identities as lp_source, the fence on
    lp_app (read-only on the source after the cutover, writable again after the rollback)."""
    from harness import run_other_dag

    from pgmigrate.control.state import MigrationStateStore
    from pgmigrate.cutover.routing.switch import PgBouncerRouteSwitch

    api, _, writer = migration
    writer.stop()  # a writer straight to the source would (rightly) make the checklist refuse
    store = MigrationStateStore(CONTROL)
    benches = _through_both_pgbouncers(tmp_path, 40)
    run_id, run, states = run_other_dag(api, "pg_cutover", {"migration_id": MIGRATION_ID, "backup": False})
    SWITCH_RUNS["pg_cutover"] = run_id
    assert run["state"] == "success", f"pg_cutover {run_id}: {states}"
    assert _failed(benches) == 0
    assert store.get(MIGRATION_ID)["phase"] == "cut_over"
    with (
        psycopg.connect(
            conninfo(SOURCE_PORT, SRC_DB) + f" user={APP_ROLE} password={APP_PASSWORD}", autocommit=True
        ) as app,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        app.execute("UPDATE customers SET visits = 0 WHERE id = 1")
    for port in (6432, 6433):
        switch = PgBouncerRouteSwitch(PgEndpoint("127.0.0.1", port, "pgbouncer", "postgres", "postgres"))
        assert switch.current_route(SRC_DB).port == TARGET_PORT

    benches = _through_both_pgbouncers(tmp_path, 30)
    run_id, run, states = run_other_dag(api, "pg_rollback", {"migration_id": MIGRATION_ID, "reason": "lp drill"})
    SWITCH_RUNS["pg_rollback"] = run_id
    assert run["state"] == "success", f"pg_rollback {run_id}: {states}"
    assert _failed(benches) == 0
    assert store.get(MIGRATION_ID)["phase"] == "streaming"
    with psycopg.connect(
        conninfo(SOURCE_PORT, SRC_DB) + f" user={APP_ROLE} password={APP_PASSWORD}", autocommit=True
    ) as app:
        app.execute("UPDATE customers SET visits = visits WHERE id = 1")  # the fence is lifted
    assert wait_until_identical(SRC_DB, DST_DB, ["public"]) == {}


def _xcom_values(api, run_id: str, task_id: str, dag_id: str = "pg_migration") -> list[tuple[str, str]]:
    base = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries"
    found = []
    for entry in api.request("GET", base)["xcom_entries"]:
        value = api.request("GET", f"{base}/{entry['key']}?map_index={entry['map_index']}").get("value")
        found.append((f"XCom {task_id}/{entry['key']}", json.dumps(value, default=str)))
    return found


def test_no_password_in_logs_xcom_templates_report_or_connector_configs(migration, tmp_path):
    api, run_id, _ = migration
    places: list[tuple[str, str]] = []
    for dag_id, dag_run in (("pg_migration", run_id), *SWITCH_RUNS.items()):
        for ti in api.task_instances(dag_id, dag_run):
            task_id = ti["task_id"]
            for try_number in range(1, (ti.get("try_number") or 0) + 1):  # a skipped task never ran: no log
                where = f"task log {task_id} try {try_number}" + ("" if dag_id == "pg_migration" else f" of {dag_id}")
                places.append((where, task_log(api, dag_run, task_id, try_number, dag_id=dag_id)))
            places.extend(_xcom_values(api, dag_run, task_id, dag_id))
            detail = api.request("GET", f"/dags/{dag_id}/dagRuns/{dag_run}/taskInstances/{task_id}")
            assert "rendered_fields" in detail  # Airflow 3 serves the rendered templates here
            rendered = json.dumps(detail["rendered_fields"], default=str)
            places.append((f"rendered fields of {dag_id}.{task_id}", rendered))
    assert set(SWITCH_RUNS) == {"pg_cutover", "pg_rollback"}, "the cutover and rollback runs are grepped too"
    # The grep read real content of this run: the logs name the roles (never their passwords), XCom holds results.
    logs = {where: text for where, text in places if where.startswith("task log")}
    assert len(logs) >= 9 and all(logs.values()), [where for where, text in logs.items() if not text]
    assert f"{SRC_ROLE}@127.0.0.1:{SOURCE_PORT}/{SRC_DB}" in logs["task log preflight try 1"]
    assert sum(1 for where, _ in places if where.startswith("XCom")) >= 5

    paths = write_report(collect_report_data(CONTROL, MIGRATION_ID), tmp_path)
    places += [(f"report {paths[k]}", Path(paths[k]).read_text()) for k in ("html", "markdown")]

    connectors = [
        c for c in CONNECT.list_connectors() if MIGRATION_ID in c or c in (NAMES.source_connector, NAMES.sink_connector)
    ]
    assert {NAMES.source_connector, NAMES.sink_connector} <= set(connectors)
    for name in connectors:
        config = CONNECT.get_config(name)
        places.append((f"GET /connectors/{name}/config", json.dumps(config)))
        for key, value in config.items():
            if "password" in key:
                assert value.startswith("${file:"), f"{name} {key} is not a ${{file:…}} reference"

    # The grep finds the passwords where they are meant to be: the secrets file Connect's workers read.
    secrets = SECRETS_DIR / NAMES.secrets_file
    assert all(p in secrets.read_text() for p in PASSWORDS), f"{secrets} should hold both passwords"

    leaks = [
        f"{where}: contains the password of {'lp_source' if p == SRC_PASSWORD else 'lp_target'}"
        for where, text in places
        for p in PASSWORDS
        if p in text
    ]
    assert not leaks, "\n".join(leaks)
