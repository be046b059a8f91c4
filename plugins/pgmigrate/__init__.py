"""Zero-downtime PostgreSQL migration: the domain package.

Laid out like an Airflow provider: ``hooks/``, ``operators/``, ``sensors/`` and
``triggers/`` hold the thin Airflow layer; the plain modules beside them hold the
migration logic and need no Airflow to import or test.
"""
