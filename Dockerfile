# syntax=docker/dockerfile:1
# Multi-stage build: compile with the full toolchain, run from a small image as a non-root user.
FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
# The whole context (see .dockerignore): Cargo.toml names benches and examples, whose files
# must exist for cargo to read the manifest, even though only the binary is built.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin gatehouse \
    && cp target/release/gatehouse /gatehouse

FROM debian:bookworm-slim AS runtime
# /app/data holds the default DATABASE__URL (sqlite://data/gatehouse.db), owned by the service
# user; mount a volume there to keep the directory and audit trail across containers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home gatehouse \
    && mkdir -p /app/data && chown 10001 /app/data
WORKDIR /app
COPY --from=build /gatehouse /usr/local/bin/gatehouse
COPY config ./config
USER 10001
ENV GATEHOUSE_ENV=production
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gatehouse"]
