# syntax=docker/dockerfile:1
# One image for every Python process of the system: the API, the services
# (persistence, callsig, support_router, presence, push) and the set-up steps
# (broker config, database migrations). docker-compose.yml picks the command;
# docs/deploy.md tells how to run it.

# --- The JavaScript client, built for the operators' dashboard, which serves it
# at /dashboard/client/ beside the mqtt package's browser module.
FROM node:20-bookworm-slim AS js-client
WORKDIR /build/clients/js
COPY clients/js/package.json clients/js/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY clients/js/tsconfig.json ./
COPY clients/js/src ./src
RUN npm run build

# --- Python dependencies in a virtualenv. Only pyproject.toml's dependency list
# goes in first, so this layer is rebuilt when dependencies change, not when the
# code does.
FROM python:3.11-slim-bookworm AS python-deps
RUN python -m venv /venv
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; \
deps = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']; \
open('/tmp/requirements.txt', 'w').write('\n'.join(deps))" \
 && /venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

# --- The image: the project's folder run in place, as the launcher runs it
# (migrations, the broker template and the dashboard are found beside the code).
FROM python:3.11-slim-bookworm
# /data: DATA_DIR (media). /mosquitto: where the broker set-up step writes the
# broker's config and ACL file, into volumes the broker mounts; a new named
# volume takes the owner of the folder it is first mounted on, this user's.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home chat \
 && mkdir -p /data/media /mosquitto/config /mosquitto/data \
 && chown -R chat:chat /data /mosquitto
COPY --from=python-deps /venv /venv
WORKDIR /app
# The code belongs to root: the processes read it and cannot change it.
COPY . /app
COPY --from=js-client /build/clients/js/dist /app/clients/js/dist
COPY --from=js-client \
     /build/clients/js/node_modules/mqtt/dist/mqtt.esm.js \
     /app/clients/js/node_modules/mqtt/dist/mqtt.esm.js
RUN /venv/bin/python -m compileall -q /app
# PYTHONUNBUFFERED: log lines leave at once (the launcher sets the same).
ENV PATH=/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data
USER chat
# The API by default; docker-compose.yml gives each service its command.
CMD ["python", "-m", "api"]
