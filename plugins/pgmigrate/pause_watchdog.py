"""The write pause ends within `max_pause_seconds` whatever happens to the process that paused.

`arm()` starts a detached process (own session, so killing the Airflow task or its process group does
not kill it) that RESUMEs the database in PgBouncer at a deadline unless `disarm()` was called first.
Arm it *before* sending PAUSE: PgBouncer holds clients from the moment the command arrives.

The "still armed" marker is a small file in a local state directory, not a row in the control DB:
the watchdog must act exactly when something else has gone wrong, and a local file needs no network,
no database and no credentials to check. Disarming and firing are decided by one atomic operation
each side: `disarm()` unlinks the marker, the watchdog renames it to `*.fired` before it resumes;
whichever comes first wins, so the caller learns for certain whether the watchdog resumed.
Consequence: arm and disarm must run on the same host (true for the local stack's LocalExecutor).

The admin password reaches the watchdog in its environment (PGMIGRATE_WATCHDOG_PASSWORD), never in
argv, which any user can read with `ps`. What the watchdog did goes to `<state_dir>/pause-watchdog.log`.

Run by `arm()` as: python -m pgmigrate.pause_watchdog --host … --port … --user … --database …
--deadline <unix time> --marker <file> --log <file>
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pgmigrate
from pgmigrate.endpoints import PgEndpoint
from pgmigrate.pgbouncer_routes import validate_database_name
from pgmigrate.route_switch import PgBouncerRouteSwitch

log = logging.getLogger(__name__)

PASSWORD_ENV = "PGMIGRATE_WATCHDOG_PASSWORD"
LOG_NAME = "pause-watchdog.log"
POLL_SECONDS = 0.1
# When PgBouncer does not answer at the deadline, keep trying this long: the pause must still end.
RESUME_RETRY_SECONDS = 120.0


@dataclass(frozen=True)
class WatchdogHandle:
    """What `disarm()` needs; JSON-able (`as_dict`/`from_dict`) so it can travel in XCom."""

    database: str
    marker: str
    pid: int
    deadline: float
    log_file: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WatchdogHandle:
        return cls(**data)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def arm(admin: PgEndpoint, database: str, max_pause_seconds: float, state_dir: Path | str) -> WatchdogHandle:
    """Start the watchdog: at now + `max_pause_seconds` it RESUMEs `database` unless disarmed."""
    name = validate_database_name(database)
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    deadline = time.time() + max_pause_seconds
    marker = state / f"pause-{name}-{uuid.uuid4().hex[:12]}.armed"
    marker.write_text(f"{name} deadline {_iso(deadline)}\n")
    log_file = state / LOG_NAME
    env = dict(os.environ)
    env[PASSWORD_ENV] = admin.password
    # The Airflow task imports pgmigrate from plugins/ via sys.path; the child needs it on PYTHONPATH.
    package_root = str(Path(pgmigrate.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    argv = [
        sys.executable, "-m", "pgmigrate.pause_watchdog",
        "--host", admin.host, "--port", str(admin.port), "--user", admin.user, "--admin-db", admin.dbname,
        "--database", name, "--deadline", repr(deadline), "--marker", str(marker), "--log", str(log_file),
    ]
    try:
        with open(log_file, "a") as output:
            process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                start_new_session=True, close_fds=True,
            )
    except OSError:
        marker.unlink(missing_ok=True)
        raise
    log.info("pause watchdog armed for %s: pid %d resumes it at %s unless disarmed (log: %s)",
             name, process.pid, _iso(deadline), log_file)
    return WatchdogHandle(database=name, marker=str(marker), pid=process.pid, deadline=deadline, log_file=str(log_file))


def disarm(handle: WatchdogHandle) -> bool:
    """Stop the watchdog from resuming; True if disarmed in time, False if it had already fired (then
    the database was resumed at the deadline: the caller must treat the pause as ended)."""
    try:
        Path(handle.marker).unlink()
    except FileNotFoundError:
        log.warning("pause watchdog for %s had already fired at %s (see %s): the database was resumed by it",
                    handle.database, _iso(handle.deadline), handle.log_file)
        return False
    log.info("pause watchdog for %s disarmed (pid %d exits on its own)", handle.database, handle.pid)
    return True


def run(admin: PgEndpoint, database: str, deadline: float, marker: Path) -> str:
    """The watchdog's life: wait for disarm or the deadline, then claim the marker and RESUME.
    Returns what happened: "disarmed", "resumed" or "not-paused"."""
    log.info("armed: %s will be resumed at %s unless disarmed (marker %s)", database, _iso(deadline), marker)
    while time.time() < deadline:
        if not marker.exists():
            log.info("disarmed before the deadline; %s left as it is", database)
            return "disarmed"
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.time())))
    fired = marker.with_suffix(".fired")
    try:
        marker.rename(fired)
    except FileNotFoundError:
        log.info("disarmed at the deadline; %s left as it is", database)
        return "disarmed"
    try:
        return _resume_with_retries(admin, database, deadline)
    finally:
        fired.unlink(missing_ok=True)


def _resume_with_retries(admin: PgEndpoint, database: str, deadline: float) -> str:
    log.warning("deadline %s reached and not disarmed: RESUME %s", _iso(deadline), database)
    switch = PgBouncerRouteSwitch(admin)
    give_up = time.time() + RESUME_RETRY_SECONDS
    while True:
        try:
            was_paused = switch.resume(database)
            break
        except Exception as exc:  # any failure: retry, the pause must end
            if time.time() >= give_up:
                log.error("could not RESUME %s for %.0f s: %s. Resume it by hand on the admin console: RESUME %s;",
                          database, RESUME_RETRY_SECONDS, exc, database)
                raise
            log.warning("RESUME %s failed (%s); retrying", database, exc)
            time.sleep(1.0)
    late = time.time() - deadline
    if was_paused:
        log.warning("%s resumed by the watchdog (%.2f s after the deadline); clients continue on its current route",
                    database, late)
        return "resumed"
    log.info("%s was not paused any more at the deadline; nothing to do", database)
    return "not-paused"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--admin-db", default="pgbouncer")
    parser.add_argument("--database", required=True)
    parser.add_argument("--deadline", type=float, required=True, help="unix time")
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        filename=args.log, level=logging.INFO,
        format=f"%(asctime)s pause-watchdog[{os.getpid()}] {args.database}: %(levelname)s %(message)s",
    )
    password = os.environ.pop(PASSWORD_ENV, "")
    admin = PgEndpoint(host=args.host, port=args.port, dbname=args.admin_db, user=args.user, password=password)
    try:
        run(admin, validate_database_name(args.database), args.deadline, args.marker)
    except Exception:
        log.exception("watchdog failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
