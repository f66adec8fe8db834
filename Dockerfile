# The one image every service of docker-compose.yml runs: the site, the workers, beat and
# the migration step. Two stages: the first builds Paperwire's wheel from the source tree,
# the second installs that wheel (its dependencies from the package index) and nothing else,
# so the image runs exactly what `pip install paperwire-*.whl` gives a user: the migrations
# and email templates come from inside the installed package, not from a checkout.
FROM python:3.11-slim AS wheel
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN pip install build
COPY pyproject.toml README.md ./
COPY newsletter newsletter
COPY workers workers
COPY email_templates email_templates
COPY alembic alembic
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=wheel /dist /tmp/dist
# With the `local` extra: mount a sentence-transformers model folder and set
# EMBEDDING_LOCAL_MODEL to it for semantic paper vectors with no key and no server.
RUN wheel=$(ls /tmp/dist/paperwire-*.whl) && pip install --no-cache-dir "${wheel}[local]" \
    && rm -rf /tmp/dist \
    && useradd --create-home --uid 10001 paperwire \
    && mkdir -p /data/outbox && chown -R paperwire /data
USER paperwire
# The working directory holds nothing the app reads: state lives in /data and Postgres.
WORKDIR /home/paperwire
EXPOSE 8000
CMD ["newsletter", "--help"]
