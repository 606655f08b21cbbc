# The project's image: the testbed's processes (compose.yaml) and the suite's steps
# (deploy/docker, deploy/k8s). Needs an image registry (python:3.11-slim); the hermetic
# images built without one are testbed/docker's.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/nightly
COPY pyproject.toml README.md ./
COPY nightly_pipeline ./nightly_pipeline
RUN pip install . && useradd --create-home --uid 1000 nightly \
    && mkdir /nightly /config && chown nightly /nightly /config
# PostgreSQL refuses to run as root: the embedded platform a step starts runs it as this user
USER nightly
ENV NIGHTLY_HOME=/nightly
CMD ["nightly", "--help"]
