# Scoring worker image: `docker build -t streamscore .`
# Runs a dataflow with Bytewax; configure it with /app/streamscore.toml (its defaults, commented;
# mount your own there or point STREAMSCORE_CONFIG at it) and environment variables
# (STREAMSCORE_*, KAFKA_BOOTSTRAP_SERVERS, KAFKA_OPT_*; see docs/configuration.md).
#   docker run --rm --network host -e STREAMSCORE_SOURCE=kafka -e STREAMSCORE_OUTPUT=kafka \
#     -e KAFKA_BOOTSTRAP_SERVERS=localhost:9092 streamscore
# The entrypoint is deploy/entrypoint.sh, the one the Helm chart's pods run (docs/kubernetes.md):
#   docker run ... streamscore                       # flow (DATAFLOW, default the fraud flow)
#   docker run ... streamscore serve --workers 2     # the scoring endpoint
# Scale out: -e BYTEWAX_WORKERS_PER_PROCESS=2, or run several containers as one cluster with
# BYTEWAX_PROCESS_ID and BYTEWAX_ADDRESSES="host1:2101;host2:2101" (or BYTEWAX_HOSTFILE_PATH).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_NO_CACHE=1
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
# uv, pinned as in the Makefile; the image installs exactly the versions in uv.lock.
RUN pip install uv==0.13.9

WORKDIR /app
# The locked dependencies first (a layer that changes only with uv.lock), then the project.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project --no-editable
COPY settings settings
COPY dataflows dataflows
COPY monitoring monitoring
COPY service service
COPY cli cli
COPY features features
COPY models models
COPY datagen datagen
COPY benchmarks benchmarks
COPY feature_repo feature_repo
RUN uv sync --frozen --no-editable
ENV PATH=/app/.venv/bin:$PATH
COPY streamscore.toml ./
COPY deploy/entrypoint.sh deploy/entrypoint.sh

# Bring your own model registry and Feast registry (mount them, or bake them in
# a derived image): /app/model_registry and /app/feature_repo/data.
ENV DATAFLOW=dataflows.fraud:flow BYTEWAX_WORKERS_PER_PROCESS=1
EXPOSE 3030 8000
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["flow"]
