# syntax=docker/dockerfile:1
# Multi-stage build: compile with the full toolchain, run from a small image as a non-root user.
FROM rust:1.88-slim-bookworm AS build
WORKDIR /src
# Build dependencies first so that source changes reuse the cached layer.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY src ./src
COPY templates ./templates
COPY config ./config
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home gatehouse
WORKDIR /app
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
COPY config ./config
USER 10001
ENV GATEHOUSE_ENV=production
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gatehouse"]
