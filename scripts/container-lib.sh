# Shared by the container scripts (container-test, compose-test, fresh-machine-test).
# Source it after scripts/lib.sh; do not run it.
#
# There is no Docker engine and no registry on CI's machine: podman runs everything,
# and the public base images are replaced by local stand-ins built from Debian's
# mirror and the host's Rust toolchain, cached in podman's storage between runs:
#   DEBIAN_STANDIN      Debian 12 minbase (mmdebstrap) with ca-certificates: a clean
#                       Debian machine, and the base of the other stand-ins
#   RUST_STANDIN        for rust:1.95-slim-bookworm: gcc, libc6-dev, the host's Rust
#                       toolchain with its musl targets, a rustup that only knows
#                       `target add` of those
#   HAPROXY_STANDIN     for haproxy:2.8: Debian's haproxy (2.6) laid out as the
#                       official image (config path, command, user)
#   PROMETHEUS_STANDIN  for prom/prometheus: Debian's prometheus binary laid out as
#                       the official image (entrypoint, user, working directory)
# The only thing taken from the host besides the toolchain is the network's extra
# CA certificates (a TLS-inspecting proxy), so that HTTPS inside containers verifies.

DEBIAN_STANDIN=localhost/greeting-debian:bookworm-minbase
HAPROXY_STANDIN=localhost/greeting-haproxy-standin:2.6
PROMETHEUS_STANDIN=localhost/greeting-prometheus-standin:2
JAEGER_STANDIN=localhost/greeting-jaeger-standin:otlp-sink
CT_CACHE=${CONTAINER_TEST_CACHE:-$HOME/.cache/greeting-service-container-test}
# The one image name and tag (compose, deploy/k8s/kustomization.yaml, deploy/README.md;
# scripts/deploy-check keeps them equal to Cargo.toml's version).
IMAGE_NAME=greeting-service
IMAGE_TAG=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/Cargo.toml" | head -1)
IMAGE=localhost/$IMAGE_NAME:$IMAGE_TAG

# Installs podman and friends and points podman at a configuration that works here.
ct_setup() {
    need_apt podman:podman buildah:buildah runc:runc slirp4netns fuse-overlayfs uidmap iptables \
        containernetworking-plugins golang-github-containers-common mmdebstrap:mmdebstrap
    mkdir -p "$CT_CACHE"
    # crun fails on this machine's cgroups ("hybrid mode not supported"): use runc,
    # and ulimits the machine allows.
    cat >"$CT_CACHE/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
    export CONTAINERS_CONF=$CT_CACHE/containers.conf
    # Each build leaves its untagged build stage (about 2 GB) as the layer cache for
    # the next one: keep a day of them, not every run's.
    podman image prune -f --filter until=24h >/dev/null 2>&1 || true
}

# Builds a stand-in from a Containerfile given on stdin and a context directory.
# Usage: ct_build_standin TAG CONTEXT_DIR <Containerfile
ct_build_standin() {
    cat >"$2/Containerfile"
    podman build -q -t "$1" "$2" >/dev/null || die "building the stand-in $1 failed"
}

ct_debian_standin() {
    podman image exists "$DEBIAN_STANDIN" && return 0
    echo "building $DEBIAN_STANDIN (mmdebstrap minbase)"
    local mirror tmp
    mirror=$(grep -m1 '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}')
    mirror=${mirror:-http://deb.debian.org/debian}
    tmp=$(mktemp -d)
    mmdebstrap --variant=minbase --include=ca-certificates bookworm "$tmp/base.tar" "$mirror" >/dev/null 2>&1 \
        || { rm -rf "$tmp"; die "mmdebstrap failed"; }
    podman import --change 'CMD ["/bin/bash"]' "$tmp/base.tar" "$DEBIAN_STANDIN" >/dev/null 2>&1
    rm -rf "$tmp"
}

# Copies the network's extra CA certificates into a build context's certs/.
ct_host_certs() {
    mkdir -p "$1/certs"
    cp /usr/local/share/ca-certificates/*.crt "$1/certs/" 2>/dev/null || true
}

# The Rust builder stand-in, tagged by the host toolchain's version; it carries the
# musl targets for both architectures the Dockerfile builds.
ct_rust_standin() {
    ct_debian_standin
    local version
    version=$(rustc --version | awk '{print $2}')
    RUST_STANDIN=localhost/greeting-rust-standin:$version-musl-amd64-arm64
    podman image exists "$RUST_STANDIN" && return 0
    echo "building $RUST_STANDIN (host toolchain)"
    rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl >/dev/null 2>&1 \
        || die "rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl failed"
    local ctx sysroot
    ctx=$(mktemp -d)
    sysroot=$(rustc --print sysroot)
    cp -a "$sysroot/bin" "$sysroot/lib" "$ctx/"
    ct_host_certs "$ctx"
    cat >"$ctx/rustup" <<'SHIM'
#!/bin/sh
# Stand-in for rustup in the CI builder: targets are preinstalled from the host.
[ "$1 $2" = "target add" ] || { echo "rustup stand-in: only 'target add'" >&2; exit 1; }
shift 2
for t in "$@"; do
    [ -d "/usr/local/rust/lib/rustlib/$t" ] || { echo "rustup stand-in: target $t is not installed" >&2; exit 1; }
done
SHIM
    chmod +x "$ctx/rustup"
    ct_build_standin "$RUST_STANDIN" "$ctx" <<CF
FROM $DEBIAN_STANDIN
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY certs/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY bin/ /usr/local/rust/bin/
COPY lib/ /usr/local/rust/lib/
COPY rustup /usr/local/rust/bin/rustup
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    CARGO_HOME=/usr/local/cargo
CF
    rm -rf "$ctx"
}

ct_haproxy_standin() {
    ct_debian_standin
    podman image exists "$HAPROXY_STANDIN" && return 0
    echo "building $HAPROXY_STANDIN (Debian's haproxy)"
    local ctx
    ctx=$(mktemp -d)
    ct_build_standin "$HAPROXY_STANDIN" "$ctx" <<CF
FROM $DEBIAN_STANDIN
RUN apt-get update && apt-get install -y --no-install-recommends haproxy && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
CF
    rm -rf "$ctx"
}

ct_prometheus_standin() {
    ct_debian_standin
    need_apt prometheus:prometheus
    podman image exists "$PROMETHEUS_STANDIN" && return 0
    echo "building $PROMETHEUS_STANDIN (Debian's prometheus)"
    local ctx
    ctx=$(mktemp -d)
    cp "$(command -v prometheus)" "$ctx/prometheus"
    ct_build_standin "$PROMETHEUS_STANDIN" "$ctx" <<CF
FROM $DEBIAN_STANDIN
COPY prometheus /bin/prometheus
RUN mkdir -p /etc/prometheus /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
CF
    rm -rf "$ctx"
}

# Jaeger's stand-in: scripts/otlp-sink.py (an OTLP/HTTP receiver that counts what it
# gets) on Debian's python3, with Jaeger's ports; Jaeger's arguments are ignored.
ct_jaeger_standin() {
    ct_debian_standin
    local ctx
    ctx=$(mktemp -d)
    cp "$REPO_ROOT/scripts/otlp-sink.py" "$ctx/otlp-sink.py"
    # Rebuilt when the script changes (podman's layer cache keeps it cheap).
    ct_build_standin "$JAEGER_STANDIN" "$ctx" <<CF
FROM $DEBIAN_STANDIN
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
COPY otlp-sink.py /otlp-sink.py
USER nobody
EXPOSE 4318 16686
ENTRYPOINT ["python3", "/otlp-sink.py"]
CF
    rm -rf "$ctx"
}

# Builds the real Dockerfile for one architecture with the Rust stand-in.
# Usage: ct_build_image ARCH TAG   (ARCH: amd64 or arm64)
ct_build_image() {
    ct_rust_standin
    local arch=$1 tag=$2 start log
    start=$(date +%s)
    log=$(mktemp)
    # podman 4.3 does not set BUILDPLATFORM itself (BuildKit and newer podman do).
    podman build --format docker --platform "linux/$arch" \
        --build-arg BUILDPLATFORM="linux/$(podman info --format '{{.Host.Arch}}')" \
        --build-arg RUST_IMAGE="$RUST_STANDIN" \
        --build-arg REVISION="$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
        -t "$tag" "$REPO_ROOT" >"$log" 2>&1 || { tail -40 "$log"; die "podman build --platform linux/$arch failed"; }
    rm -f "$log"
    echo "built $tag for linux/$arch in $(( $(date +%s) - start )) s"
}
