# syntax=docker/dockerfile:1
# The mqtt-ingest image: the node and the Mosquitto it supervises, nothing else (no Python, no supervisord).
# Three stages: `build` compiles the TypeScript, `deps` installs the production dependencies against that output,
# `runtime` holds only the compiled output, the production node_modules, Mosquitto and tini.
# test/container.test.ts parses this file and runs the runtime stage's install and entry command outside Docker.

ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Only the compiler and type definitions are needed here, so no install scripts run (no native builds).
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# better-sqlite3 compiles from source when no prebuilt binary matches this Node.js.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# `prepare` runs on `npm ci`: without TypeScript installed it only checks that dist/ is there (scripts/prepare.mjs).
COPY scripts/prepare.mjs scripts/prepare.mjs
COPY --from=build /app/dist/ dist/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
# Mosquitto from Debian's packages, supervised by the node; tini as PID 1 forwards SIGTERM to the node (which
# then drains and stops Mosquitto) and reaps zombies. Debian's package starts no broker in a container.
RUN apt-get update \
 && apt-get install -y --no-install-recommends mosquitto tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules/ node_modules/
COPY --from=build /app/dist/ dist/
COPY package.json ./
COPY bin/ bin/
# The spool, Mosquitto's database and file sink output. The base image's `node` user (uid 1000) owns it.
RUN mkdir -p /data && chown node:node /data
# V8 heap settings (docs/performance.md): the node's live memory is bounded, but without a limit V8 collects
# lazily and RSS grows with the garbage of a long drain (about 345 MB for 1,000,000 messages); 192 MB of old
# space keeps it under 250 MB. A 16 MB semi-space (V8's default is smaller) lets a batch in flight die young
# instead of being promoted; 32 MB gains a few percent of Pub/Sub throughput but peaks near 250 MB. Raise
# both on larger instances. (Node refuses --min-semi-space-size in NODE_OPTIONS, so the young generation
# still starts small and grows to this size.)
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-old-space-size=192 --max-semi-space-size=16" \
    DATA_DIR=/data \
    PORT=8080 \
    MOSQUITTO_BIN=/usr/sbin/mosquitto
USER node
VOLUME ["/data"]
EXPOSE 1883 8883 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/liveness_check').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "bin/mqtt-ingest.js", "run"]
