# One image for the four services; compose.yaml picks the entry point per service.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producers ./producers
COPY stream_processors ./stream_processors
COPY query_api ./query_api
COPY infra ./infra
COPY auth ./auth
RUN pip install .
# Overridden per service in compose.yaml.
CMD ["python", "-m", "query_api.app"]
