# Skillbot container image: the webhook on port 8080, run as an unprivileged user.
#
#   podman build --format docker -t localhost/skillbot:latest .           # base from a registry
#   podman build --format docker --build-arg BASE_IMAGE=skillbot-base:bookworm -t localhost/skillbot:latest .
#
# BASE_IMAGE is any Debian-like image with python3 (3.11 or newer) and its venv module
# (python:3.11-slim-bookworm, or the debootstrapped base that scripts/container-smoke.sh makes).
# "--format docker" keeps the HEALTHCHECK (the OCI image format has no health check field).
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# ---- build: the dependencies in a virtual environment, from PyPI -------------------------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY pyproject.toml ./
# Only the dependency list of pyproject.toml: the application itself stays a folder in /app, so
# this layer is rebuilt only when the dependencies change.
# A network that inspects TLS needs its CA for pip: pass it as a build secret (never stored in a
# layer): --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && python3 -m venv /opt/skillbot \
 && /opt/skillbot/bin/python -m pip install --progress-bar off -r requirements.txt

# ---- runtime: the environment, the application, no build tools -----------------------------------
FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/skillbot/bin:$PATH
RUN (getent group skillbot || groupadd --system --gid 10001 skillbot) \
 && (getent passwd skillbot || useradd --system --uid 10001 --gid skillbot --home-dir /var/lib/skillbot \
      --no-create-home --shell /usr/sbin/nologin skillbot) \
 && mkdir -p /etc/skillbot /var/lib/skillbot \
 && chown skillbot:skillbot /var/lib/skillbot
COPY --from=build /opt/skillbot /opt/skillbot
WORKDIR /app
COPY run.py pyproject.toml LICENSE ./
COPY core ./core
COPY plugins ./plugins
# The shipped settings as the default; mount your own folder over /etc/skillbot (settings.toml
# is re-read while the bot runs). /var/lib/skillbot is for the operator's data (FAQ file, word
# lists, template overrides), named in settings.toml by absolute path.
COPY settings.toml /etc/skillbot/settings.toml
# jieba's dictionary cache is written to /tmp at the first start (a second or two).
ENV TMPDIR=/tmp
USER skillbot
EXPOSE 8080
VOLUME ["/etc/skillbot", "/var/lib/skillbot"]
HEALTHCHECK --interval=15s --timeout=4s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3).status == 200 else 1)"]
ENTRYPOINT ["python3", "run.py"]
CMD ["--settings", "/etc/skillbot/settings.toml"]
