# oms: headless order-management service.
#   docker build -t oms .
#   docker run -e OMS_DATABASE_URL=postgresql+asyncpg://user:pass@db/oms -p 8000:8000 oms
# Without OMS_DATABASE_URL the container starts an embedded Postgres under /home/oms/.oms
# (as the unprivileged `oms` user); mount a volume there to keep its data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY migrations ./migrations
RUN pip install . \
    && useradd --system --uid 10001 --create-home --home-dir /home/oms oms

USER oms
WORKDIR /home/oms
ENV OMS_MIGRATIONS_DIR=/app/migrations \
    OMS_HOST=0.0.0.0 \
    OMS_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"

# Migrations first, then the server (which then skips its own migration step).
CMD ["sh", "-c", "oms migrate && exec oms serve --no-migrate"]
