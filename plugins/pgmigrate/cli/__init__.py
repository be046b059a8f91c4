"""`scripts/migration`, the on-call CLI (`main`; run as `python -m pgmigrate.cli`), and the small client of
Airflow's REST API it, `make demo` and the tests use (`airflow_api`).
"""
