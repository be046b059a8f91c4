"""Fault injection on the real local stack for the fault matrix: kill -9 a component, stop a
PostgreSQL cluster, bring everything back the way an operator does (`make stack-up`), and a writer
that keeps writing through all of it (reconnecting like an application would)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devtools.local_stack import STATE_DIR

REPO = Path(__file__).resolve().parents[2]
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"


def component_pid(name: str) -> int:
    """The pid of a daemon `scripts/stack.sh` started (connect, kafka, airflow-triggerer, …)."""
    return int((STATE_DIR / "pids" / f"{name}.pid").read_text().split()[0])


def kill_component(name: str) -> None:
    """kill -9 of a stack daemon and its process group (the triggerer's children too)."""
    pid = component_pid(name)
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else list(args)


def pg_cluster(cluster: str, action: str) -> None:
    """`pg_ctl stop -m fast` or `restart -m fast` of one of the stack's clusters (source, target)."""
    data = STATE_DIR / "pg" / cluster
    command = [PG_CTL, "-D", str(data), "-m", "fast", "-w", "-t", "120", action]
    if action == "restart":
        command += ["-l", str(STATE_DIR / "logs" / f"postgres-{cluster}.log")]
    subprocess.run(_as_postgres(*command), check=True, capture_output=True, timeout=180)


def stack_up() -> None:
    """`make stack-up` without the install step: start whatever is down, wait until it serves."""
    result = subprocess.run([str(REPO / "scripts" / "stack.sh"), "up"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"scripts/stack.sh up failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"


def stack_healthy() -> None:
    result = subprocess.run([str(REPO / "scripts" / "stack.sh"), "status"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"the stack is not healthy after the fault:\n{result.stdout}\n{result.stderr}"


@dataclass
class ResilientWriter:
    """An application writing at a fixed rate: `statements(i)` in one transaction per tick. A lost
    connection is retried (the application's own problem, counted in `failed`), never silently dropped:
    `committed` counts only transactions whose COMMIT returned."""

    conninfo: str
    statements: Callable[[int], list[tuple[str, tuple]]]
    rate: float = 10.0
    committed: int = 0
    failed: int = 0
    last_error: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ResilientWriter:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        i = 0
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.conninfo, connect_timeout=3)
                i += 1
                with conn.transaction():
                    for statement, args in self.statements(i):
                        conn.execute(statement, args)
                self.committed += 1
            except psycopg.Error as exc:
                self.failed += 1
                self.last_error = str(exc).strip()[:200]
                if conn is not None and not conn.closed and conn.info.transaction_status != 0:
                    try:
                        conn.rollback()
                    except psycopg.Error:
                        conn.close()
                if conn is not None and conn.broken:
                    conn.close()
                self._stop.wait(0.5)
            self._stop.wait(1.0 / self.rate)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
