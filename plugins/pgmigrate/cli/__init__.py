"""`scripts/migration`, the on-call CLI (run as `python -m pgmigrate.cli`): its command line (`main`), the
subcommands that answer from this terminal (`direct_commands`) and those that run a DAG and follow it
(`dag_commands`), what they share (`context`), and the small client of Airflow's REST API it, `make demo` and the
tests use (`airflow_api`).
"""
