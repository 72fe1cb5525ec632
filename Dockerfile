# MailLaser container image.
#
#   docker build -t mail-laser .
#   docker run --rm -p 2525:2525 -p 8080:8080 \
#     -e MAIL_LASER_TARGET_EMAILS=you@example.com -e MAIL_LASER_WEBHOOK_URL=- mail-laser
#
# Every MAIL_LASER_* setting: docs/configuration.md; /health, /ready and
# /metrics on port 8080: docs/http.md.
#
# The image also carries the `webhook_sink` example (a demo webhook receiver
# answering 204), used by docker-compose.yml with a different entrypoint:
#   docker run --rm --entrypoint /usr/local/bin/webhook_sink mail-laser 0.0.0.0:9000 --print

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build ---------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src

# Dependency layer: build every dependency against stub sources so that
# editing MailLaser's own code does not rebuild the crate graph. Every target
# named in Cargo.toml needs a file for the manifest to load.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src examples benches \
    && echo 'fn main() {}' > src/main.rs \
    && : > src/lib.rs \
    && echo 'fn main() {}' > examples/webhook_sink.rs \
    && for bench in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name = "\(.*\)"/\1/p' Cargo.toml); do \
         echo 'fn main() {}' > "benches/$bench.rs"; \
       done \
    && cargo build --release --locked --bin mail-laser --example webhook_sink \
    && rm -rf src examples benches

# The real sources. `touch` makes sure cargo sees them as newer than the stub
# build even when the build context kept old modification times.
COPY . .
RUN find src examples benches -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin mail-laser --example webhook_sink \
    && mkdir -p /out \
    && cp target/release/mail-laser target/release/examples/webhook_sink /out/ \
    && strip /out/mail-laser /out/webhook_sink

# ---- runtime -------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 maillaser \
    && useradd --system --uid 10001 --gid maillaser --home-dir /var/lib/mail-laser \
               --shell /usr/sbin/nologin maillaser \
    && install -d -o maillaser -g maillaser /var/lib/mail-laser /var/lib/mail-laser/spool

COPY --from=builder /out/mail-laser /out/webhook_sink /usr/local/bin/

# The working directory holds the spool (MAIL_LASER_DELIVERY=spool) and is
# the only place the server writes to.
WORKDIR /var/lib/mail-laser
USER maillaser:maillaser
ENV MAIL_LASER_BIND_ADDRESS=0.0.0.0 \
    MAIL_LASER_HEALTH_BIND_ADDRESS=0.0.0.0 \
    MAIL_LASER_SPOOL_DIR=/var/lib/mail-laser/spool

EXPOSE 2525 8080

# No HEALTHCHECK in the image: the same image also runs `webhook_sink`
# (above), which has no /health on 8080, so a built-in probe would mark it
# unhealthy. Health checks belong to whoever runs a binary: docker-compose.yml
# probes mail-laser's GET /health on 8080 and the webhook's GET /count on
# 9000; the Kubernetes manifests (deploy/kubernetes/) use MailLaser's /health
# and /ready endpoints as liveness and readiness probes. The slim image has
# no curl or wget; bash's /dev/tcp is enough for such a probe (see
# docker-compose.yml).

ENTRYPOINT ["/usr/local/bin/mail-laser"]
