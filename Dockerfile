# syntax=docker/dockerfile:1
# The edge subscriber for a Raspberry Pi (linux/arm/v7, 32-bit Raspberry Pi OS).
#
#   docker buildx build --platform linux/arm/v7 -t teams-presence-edge .
#
# The build stage runs on the build machine's own architecture ($BUILDPLATFORM) and
# cross-compiles a static armv7 binary, so building on an x86_64 laptop is fast; the runtime
# stage is a small arm32v7 Debian with CA certificates and a non-root user.

ARG RUST_VERSION=1
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
RUN rustup target add armv7-unknown-linux-gnueabihf \
 && apt-get update \
 && apt-get install -y --no-install-recommends gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
    CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
    RUSTFLAGS="-C target-feature=+crt-static"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --features vendored-openssl \
      --target armv7-unknown-linux-gnueabihf \
 && cp target/armv7-unknown-linux-gnueabihf/release/teams-presence /teams-presence

FROM --platform=linux/arm/v7 debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home teams-presence
COPY --from=build /teams-presence /usr/local/bin/teams-presence
USER teams-presence
WORKDIR /data
# edge-state.json (last applied sequence per user) lives here; mount a volume to keep it.
VOLUME ["/data"]
ENTRYPOINT ["teams-presence", "subscribe"]
CMD ["--data-dir", "/data"]
