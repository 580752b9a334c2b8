# syntax=docker/dockerfile:1
# greeting-service: a static (musl) binary on an empty, non-root base, for linux/amd64
# and linux/arm64.
#
#   docker build -t greeting-service:0.1.0 .
#   docker run -p 8080:8080 greeting-service:0.1.0
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/greeting-service:0.1.0 --push .
#
# The build stage runs on the builder's own platform (BUILDPLATFORM) and compiles for
# the target's (TARGETARCH): no emulation, one toolchain. CI builds this same file
# with a local stand-in for RUST_IMAGE, for both architectures (scripts/container-test,
# scripts/cross-test).
#
# Why the runtime is `scratch` and not distroless static: the image needs a passwd
# entry for its uid, a CA bundle and the binary, which the build stage has. Built from
# scratch, the default `docker build .` image is exactly the one CI builds, runs and
# measures on a machine that cannot pull from a registry; a distroless base would be
# a second, unmeasured image. Same contents that matter: no shell, no package
# manager, uid 65532 ("nonroot", as in distroless), the Debian CA bundle.

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm

FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
# Set by BuildKit and by podman/buildah from --platform. Unset (an older builder),
# the target is the build machine's own architecture. (podman before 4.4 does not set
# BUILDPLATFORM: pass --build-arg BUILDPLATFORM=linux/amd64 for a cross build.)
ARG TARGETARCH
# CPU baseline for amd64 only: the portable x86-64 by default. x86-64-v3 (AVX2,
# Haswell and later) is an option for fleets known to have it: 4 % fewer user-space
# instructions per request (14,312 against 14,902, scripts/perf-gate's server
# measurement). arm64 builds use the target's generic baseline (ARM64_TARGET_CPU, e.g.
# neoverse-n1 for Graviton 2, when the fleet is known).
ARG TARGET_CPU=x86-64
ARG ARM64_TARGET_CPU=
WORKDIR /src
# The image ships a stripped binary (the repository's profile keeps line tables for
# profiling).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
# mimalloc and ring compile C for the target: musl's headers and a gcc for the target
# come from Debian (musl-dev of the target architecture pulls in its gcc). The musl
# wrapper compiles the C code; the plain gcc links, as rustc's musl target brings its
# own C runtime. The choices go to /build.env for the later steps.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN build_arch=$(dpkg --print-architecture) \
    && TARGETARCH=${TARGETARCH:-$build_arch} \
    && case "$TARGETARCH" in \
        amd64) target=x86_64-unknown-linux-musl; gnu=x86_64-linux-gnu; musl=x86_64-linux-musl; cpu=$TARGET_CPU ;; \
        arm64) target=aarch64-unknown-linux-musl; gnu=aarch64-linux-gnu; musl=aarch64-linux-musl; cpu=$ARM64_TARGET_CPU ;; \
        *) echo "unsupported TARGETARCH '$TARGETARCH': build for amd64 or arm64" >&2; exit 1 ;; \
    esac \
    && if [ "$TARGETARCH" != "$build_arch" ]; then dpkg --add-architecture "$TARGETARCH"; fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends "musl-dev:$TARGETARCH=1.2.3-1" \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "$target" \
    && env_target=$(echo "$target" | tr 'a-z-' 'A-Z_') \
    && { echo "export TARGET=$target"; \
         echo "export CC_${target//-/_}=$musl-gcc"; \
         echo "export CARGO_TARGET_${env_target}_LINKER=$gnu-gcc"; \
         if [ -n "$cpu" ]; then echo "export RUSTFLAGS='-C target-cpu=$cpu'"; fi; } >/build.env \
    && cat /build.env
# Dependencies first, in their own layer: only a change to Cargo.toml or Cargo.lock
# rebuilds them. Every declared target gets a stub so the manifest resolves (the
# benches are read from Cargo.toml's [[bench]] names).
COPY Cargo.toml Cargo.lock ./
RUN . /build.env \
    && mkdir -p src benches/common \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs benches/common/mod.rs \
    && sed -n '/^\[\[bench\]\]/,/^name/ s/^name = "\(.*\)"/\1/p' Cargo.toml \
       | while read -r b; do echo 'fn main() {}' > "benches/$b.rs"; done \
    && cargo build --release --locked --target "$TARGET" \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# The runtime's whole file system, assembled here: the binary, the users (distroless'
# three, uid 65532 "nonroot" runs the service) and the CA bundle.
RUN . /build.env \
    && touch src/main.rs src/lib.rs \
    && cargo build --release --locked --target "$TARGET" \
    && mkdir -p /rootfs/etc/ssl/certs \
    && cp "target/$TARGET/release/greeting-service" /rootfs/greeting-service \
    && printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >/rootfs/etc/passwd \
    && printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >/rootfs/etc/group \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/greeting-service/greeting-service
LABEL org.opencontainers.image.title="greeting-service" \
      org.opencontainers.image.description="A JSON greeting over HTTP/1.1 and h2c, on hyper" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
# One layer: the binary, /etc/passwd, /etc/group and the CA bundle.
COPY --from=build /rootfs/ /
# "nonroot" from /etc/passwd; numeric so Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/greeting-service", "healthcheck"]
ENTRYPOINT ["/greeting-service"]
