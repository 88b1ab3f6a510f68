# Stand-in for postgres:16-bookworm where no image registry can be reached: Debian's PostgreSQL 15 and an
# entrypoint that honours POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB on an empty data folder, just
# enough for docker-compose.yml. Built by scripts/base-images.sh; used only by the tests.
ARG DEBIAN_IMAGE=sketch-search-standin/debian:bookworm
# hadolint ignore=DL3006
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/no-main.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
USER postgres
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# a fast shutdown, as the official image does: SIGTERM would wait for every client to disconnect
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
