# syntax=docker/dockerfile:1
# The edge subscriber for a Raspberry Pi (linux/arm/v7, 32-bit Raspberry Pi OS).
#
# Build it on a faster machine and load it onto the Pi (docs/pi.md):
#   docker buildx build --platform linux/arm/v7 -t teams-presence-edge --load .
#   docker save teams-presence-edge | ssh pi docker load
#
# The build stage runs on the build machine's own architecture ($BUILDPLATFORM). On an
# x86_64 (or arm64) machine it cross-compiles a static armv7 binary with the cross
# linker; built on an armv7 machine itself it compiles natively and installs no cross
# packages. The runtime stage is a small arm32v7 Debian with CA certificates and a
# non-root user.

ARG RUST_VERSION=1
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETPLATFORM
ARG BUILDPLATFORM
# Cross packages only when the build machine is not the target (e.g. amd64 -> arm/v7).
RUN if [ "$BUILDPLATFORM" != "$TARGETPLATFORM" ]; then \
      rustup target add armv7-unknown-linux-gnueabihf \
      && apt-get update \
      && apt-get install -y --no-install-recommends gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
      && rm -rf /var/lib/apt/lists/*; \
    else \
      echo "native build on $BUILDPLATFORM: no cross toolchain"; \
    fi
ENV RUSTFLAGS="-C target-feature=+crt-static"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    if [ "$BUILDPLATFORM" != "$TARGETPLATFORM" ]; then \
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
             CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
             AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar; \
    fi \
 && cargo build --profile pi --locked --no-default-features --features vendored-openssl \
      --target armv7-unknown-linux-gnueabihf \
 && cp target/armv7-unknown-linux-gnueabihf/pi/teams-presence /teams-presence

FROM --platform=linux/arm/v7 debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home teams-presence
COPY --from=build /teams-presence /teams-presence
RUN ln -s /teams-presence /usr/local/bin/teams-presence
USER teams-presence
WORKDIR /data
# edge-state.json (last applied sequence per user) and the subscribe loop's heartbeat
# live here; mount a volume to keep the state.
VOLUME ["/data"]
# `teams-presence healthcheck` exits 0 while the subscribe loop's heartbeat is recent,
# 1 when the loop is stuck or gone: Docker then marks the container unhealthy.
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
  CMD ["/teams-presence", "healthcheck", "--data-dir", "/data"]
ENTRYPOINT ["/teams-presence", "subscribe"]
CMD ["--data-dir", "/data"]
