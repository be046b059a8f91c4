# syntax=docker/dockerfile:1
# PgBouncer of the Docker Compose stack: the Debian package, like the local stack
# (scripts/stack.d/pgbouncer.sh). postgresql-client provides pg_isready/psql for the healthcheck
# and for `docker compose exec pgbouncer psql -h 127.0.0.1 -p 6432 -U postgres pgbouncer`.
# Build context: the repository root (see pgbouncer.Dockerfile.dockerignore).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends pgbouncer postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && (id -u postgres >/dev/null 2>&1 || useradd --system --user-group --no-create-home postgres) \
 && mkdir -p /etc/pgbouncer/routes && chown postgres:root /etc/pgbouncer/routes && chmod 2775 /etc/pgbouncer/routes
COPY --chmod=0644 include/docker/pgbouncer.ini /etc/pgbouncer/pgbouncer.ini
COPY --chown=postgres:postgres --chmod=0600 include/docker/pgbouncer-userlist.txt /etc/pgbouncer/userlist.txt
# PgBouncer refuses to run as root.
USER postgres
EXPOSE 6432
# The routes directory is a volume shared with Airflow (group root, as the Airflow containers run with
# gid 0), which rewrites routes.ini at cutover; PgBouncer refuses to start when the include is missing.
CMD ["sh", "-c", "test -f /etc/pgbouncer/routes/routes.ini || echo '; explicit routes (none yet)' > /etc/pgbouncer/routes/routes.ini; exec /usr/sbin/pgbouncer /etc/pgbouncer/pgbouncer.ini"]
