"""Test layout: tests/unit need nothing running (fakes, labelled); tests/integration and tests/dags
run against the real local stack that `make test` starts. An integration test never skips: when the
stack is down it fails and says how to bring it up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if "unit" in path.parts and not item.get_closest_marker("unit"):
            item.add_marker(pytest.mark.unit)
        if "integration" in path.parts:
            if not item.get_closest_marker("integration"):
                item.add_marker(pytest.mark.integration)
            item.fixturenames.append("stack")
    # Tests that stop the stack run after everything else.
    items.sort(key=lambda item: item.get_closest_marker("stack_teardown") is not None)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def stack() -> str:
    """The local stack must be up; returns `scripts/stack.sh status` output."""
    result = subprocess.run([str(REPO / "scripts" / "stack.sh"), "status"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.fail(
            "The local stack is not fully up, so integration tests cannot run:\n"
            f"{result.stdout}{result.stderr}\nStart it with `make stack-up` (or run `make test`)."
        )
    return result.stdout
