# revbot in a container. Runs `revbot daily` by default and keeps its state in /data.
#
#   docker build -t revbot .
#   docker run --rm --env-file revbot.env -v revbot-data:/data revbot          # revbot daily
#   docker run --rm --env-file revbot.env -v revbot-data:/data revbot status   # any command
#
# Pass the settings as environment variables (docker run --env-file / -e, a Kubernetes
# Secret). The image contains no .env and no credentials. revbot also reads a .env from its
# working directory, which is /data here, but the environment takes precedence over it.
# DATA_DIR is /data. Put it on a volume: the ledger (state.sqlite) is revbot's memory of
# synced days, report runs and emails already sent.
#
# Two stages. The first installs uv (pinned), the dependencies exactly as uv.lock gives them
# (versions and hashes, runtime only: no test or dev extras), and revbot itself as a built
# wheel, into the virtual environment /opt/revbot. The second stage copies only that
# environment onto a clean python:3.11-slim, so no uv, pip cache or source tree remains.
# For fully repeatable builds, pin the base image by digest (python:3.11-slim@sha256:...).

FROM python:3.11-slim AS build

# Pinned, so that the image and `make` read uv.lock the same way.
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore "uv==0.13.9"

ENV UV_PROJECT_ENVIRONMENT=/opt/revbot \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

WORKDIR /src

# 1. The dependencies alone, exactly as locked. This layer is rebuilt only when the lock or
#    pyproject.toml changes. --frozen takes uv.lock as it is. --locked would have to build
#    revbot's metadata (its version comes from bot/__init__.py), and bot/ is not copied yet.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# 2. revbot itself, built as a wheel and installed non-editable. The Jinja2 templates are
#    inside the package (bot.templates), so nothing is read from /src at run time.
#    --locked: if uv.lock no longer matches pyproject.toml, the build fails rather than
#    re-resolving.
COPY README.md LICENSE ./
COPY bot ./bot
COPY templates ./templates
RUN uv sync --locked --no-dev --no-editable \
 && /opt/revbot/bin/revbot --help > /dev/null


FROM python:3.11-slim

LABEL org.opencontainers.image.title="revbot" \
      org.opencontainers.image.description="Stripe revenue reports that run themselves: a ledger, a dashboard and an investor P&L email." \
      org.opencontainers.image.source="https://github.com/revbot/revbot" \
      org.opencontainers.image.licenses="MIT"

# A fixed, numeric, non-root user. Kubernetes checks runAsNonRoot against it, and
# deploy/kubernetes/revbot-cronjob.yaml uses the same UID and GID. /data is created here,
# owned by that user and private, so a new named volume mounted on it starts out the same.
RUN groupadd --system --gid 10001 revbot \
 && useradd --system --uid 10001 --gid 10001 --no-log-init \
        --home-dir /home/revbot --create-home --shell /usr/sbin/nologin revbot \
 && install -d -o 10001 -g 10001 -m 0700 /data

COPY --from=build /opt/revbot /opt/revbot

ENV PATH=/opt/revbot/bin:$PATH \
    DATA_DIR=/data \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
WORKDIR /data
VOLUME /data

# Python running as PID 1 ignores SIGTERM, because it installs no handler for it. On SIGINT
# it raises KeyboardInterrupt, and revbot then exits with 130 ("interrupted; the ledger is
# consistent"). So `docker stop` and a Kubernetes pod termination stop a run cleanly, without
# waiting for SIGKILL.
STOPSIGNAL SIGINT

ENTRYPOINT ["revbot"]
CMD ["daily"]
