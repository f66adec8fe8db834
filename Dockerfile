# The one image every service of docker-compose.yml runs: the site, the workers, beat and
# the migration step. Installed in place (-e) because the email templates and the Alembic
# migrations are read from the source tree next to the package.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY newsletter newsletter
COPY workers workers
RUN pip install --no-cache-dir -e . \
    && useradd --create-home paperwire \
    && mkdir -p /data/outbox && chown -R paperwire /data
USER paperwire
EXPOSE 8000
CMD ["newsletter", "--help"]
