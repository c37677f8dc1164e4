# syntax=docker/dockerfile:1
# The edge subscriber for a Raspberry Pi: 32-bit Raspberry Pi OS (linux/arm/v7) and 64-bit
# Raspberry Pi OS (linux/arm64, Pi 3/4/5); linux/amd64 builds too.
#
# Build it on a faster machine and load it onto the Pi (docs/pi.md):
#   docker buildx build --platform linux/arm64 -t teams-presence-edge --load .    # 64-bit Pi OS
#   docker buildx build --platform linux/arm/v7 -t teams-presence-edge --load .   # 32-bit Pi OS
#   docker save teams-presence-edge | ssh pi docker load
#
# The build stage runs on the build machine's own architecture ($BUILDPLATFORM) and
# cross-compiles a static binary for $TARGETPLATFORM with the cross linker; built on the
# target architecture itself it compiles natively and installs no cross packages. The
# binary is what scripts/build-static.sh builds: static glibc, OpenSSL compiled in, USB
# busylights (pure Rust over hidraw), no Azure SDK crates, `--profile pi`. The runtime stage
# is a small Debian for the target with CA certificates and a non-root user.

ARG RUST_VERSION=1
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETPLATFORM
ARG BUILDPLATFORM
# Rust target and Debian cross compiler of each platform.
RUN case "$TARGETPLATFORM" in \
      linux/arm/v7) echo "armv7-unknown-linux-gnueabihf arm-linux-gnueabihf armhf" ;; \
      linux/arm64) echo "aarch64-unknown-linux-gnu aarch64-linux-gnu arm64" ;; \
      linux/amd64) echo "x86_64-unknown-linux-gnu x86_64-linux-gnu amd64" ;; \
      *) echo "unsupported platform $TARGETPLATFORM" >&2; exit 1 ;; \
    esac > /target.txt
# Cross packages only when the build machine is not the target (e.g. amd64 -> arm64).
RUN read -r target gcc arch < /target.txt \
 && rustup target add "$target" \
 && if [ "$BUILDPLATFORM" != "$TARGETPLATFORM" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends "gcc-$gcc" "libc6-dev-$arch-cross" \
      && rm -rf /var/lib/apt/lists/*; \
    else \
      echo "native build on $BUILDPLATFORM: no cross toolchain"; \
    fi
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    read -r target gcc arch < /target.txt \
 && T=$(echo "$target" | tr 'a-z-' 'A-Z_') \
 && export "CARGO_TARGET_${T}_RUSTFLAGS=-C target-feature=+crt-static" \
 && if [ "$BUILDPLATFORM" != "$TARGETPLATFORM" ]; then \
      export "CARGO_TARGET_${T}_LINKER=$gcc-gcc" "CC_$(echo "$target" | tr - _)=$gcc-gcc" \
             "AR_$(echo "$target" | tr - _)=$gcc-ar"; \
    fi \
 && cargo build --profile pi --locked --no-default-features --features busylight,vendored-openssl \
      --target "$target" \
 && cp "target/$target/pi/teams-presence" /teams-presence

FROM debian:bookworm-slim AS runtime
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
