"""Where the Airflow project is: the directory holding `dags/`, `plugins/` and `include/` (this package lives in
`plugins/pgmigrate`). The one place that knows the layout; defaults that live in the project (Great Expectations
suites under `include/`, the local stack's `.stack/`) are built from it."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
