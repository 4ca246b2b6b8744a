# One image for every service; the command picks api, worker, scheduler, notifier or migrate.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The runtime dependencies only: no test or development tools in the image.
COPY requirements-prod.lock pyproject.toml ./
RUN python -m pip install -r requirements-prod.lock
COPY common ./common
COPY services ./services
COPY migrations ./migrations
COPY alembic.ini ./
RUN python -m pip install --no-deps -e . && useradd --system --uid 10001 app && mkdir -p /app/var && chown app /app/var
USER app
EXPOSE 8000
CMD ["python", "-m", "services.api"]
