-- control-db of the Docker Compose stack (docker-compose.yml), run once by the postgres image's
-- entrypoint on an empty data directory. Mirrors scripts/stack.d/postgres.sh (postgres_up):
--   airflow            Airflow metadata database
--   migration_control  migration state records (connection id migration_control)
CREATE DATABASE airflow;
CREATE DATABASE migration_control;
