# syntax=docker/dockerfile:1.7
#
# One multi-stage build for the three services. Each service is a target of this file:
#
#   docker build --target command-service -t loyalty/command-service .
#   docker build --target projector       -t loyalty/projector .
#   docker build --target query-service   -t loyalty/query-service .
#
# docker-compose.yml builds all three from here. The binaries are compiled once (stage
# `build`); the runtime images are Debian slim with the binaries, curl for the health checks,
# and an unprivileged user. Configuration is by environment, exactly the services' flags
# (DATABASE_URL, NATS_URL, LISTEN_ADDR, ...; see .env.example).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target directory between builds, so a change of the
# sources recompiles only the crates that changed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p command-service -p projector -p query-service \
    && mkdir -p /out \
    && cp target/release/command-service target/release/projector target/release/query-service /out/

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin loyalty
COPY --from=build /out/ /usr/local/bin/
USER loyalty
ENV LOG_FORMAT=json \
    RUST_LOG=info

# The command API and the relay to JetStream; applies pending migrations at start (MIGRATE).
FROM runtime AS command-service
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["command-service"]
CMD ["serve"]

# Builds the read models from the JetStream stream (`projector audit` replays the event store).
FROM runtime AS projector
ENV LISTEN_ADDR=0.0.0.0:8081
EXPOSE 8081
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8081/readyz"]
ENTRYPOINT ["projector"]
CMD ["run"]

# GraphQL over the read models.
FROM runtime AS query-service
ENV LISTEN_ADDR=0.0.0.0:8082
EXPOSE 8082
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8082/readyz"]
ENTRYPOINT ["query-service"]
