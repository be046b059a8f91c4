# syntax=docker/dockerfile:1
# Airflow image of the Docker Compose stack: the official image plus the project's pinned
# requirements.txt (providers, great-expectations, psycopg2), the way the Airflow docs recommend
# extending the image instead of _PIP_ADDITIONAL_REQUIREMENTS at every container start.
# Build context: the repository root (see airflow.Dockerfile.dockerignore).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
# requirements.txt pins apache-airflow itself, so pip cannot move Airflow off the base image's version.
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt
# Fixed UI/API login admin/admin, as in the local stack (scripts/stack.d/airflow_env.sh). Group-writable:
# the simple auth manager opens the file read-write, and compose runs as ${AIRFLOW_UID} with gid 0.
RUN echo '{"admin": "admin"}' > /opt/airflow/passwords.json \
 && chmod 664 /opt/airflow/passwords.json
