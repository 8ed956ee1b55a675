# The hub's application image: `hub web` by default; `hub worker` and `hub migrate` via the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid so that files on mounted volumes have a predictable owner.
RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /var/lib/hub --no-create-home \
       --shell /usr/sbin/nologin hub

WORKDIR /app
COPY . .
RUN pip install --no-cache-dir .

# The data directory (attachments, SQLite when no database URL is set) belongs to the hub
# user, so a fresh named volume mounted here inherits that ownership.
RUN mkdir -p /var/lib/hub /etc/hub && chown hub:hub /var/lib/hub

ENV HUB_HOST=0.0.0.0 \
    HUB_PORT=8080 \
    HUB_DATA_DIR=/var/lib/hub

USER hub
EXPOSE 8080
CMD ["hub", "web"]
