FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY newsletter newsletter
COPY workers workers
COPY alembic alembic
COPY email_templates email_templates
RUN pip install --no-cache-dir -e .
RUN useradd --create-home paperwire
USER paperwire
CMD ["newsletter", "--help"]
