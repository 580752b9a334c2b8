#!/usr/bin/env bash
# Span export's price in the build, per transport: none (the `otlp` feature off),
# HTTP/protobuf over hyper (what ships) and gRPC over tonic (built here for the
# comparison only: a copy of HEAD with opentelemetry-otlp's `grpc-tonic` feature and
# `.with_tonic()` instead of `.with_http()`).
#
#   perf/otlp-transport.sh            # about 5 minutes on 2 cores
#
# For each variant, from a clean target directory: the wall time of
# `cargo build --release` with the image's profile settings (no debug info, symbols
# stripped, as the Dockerfile builds), the binary's size (what the scratch image
# holds besides a 0.2 MB CA bundle), and the number of crates compiled. The crate
# registry must be reachable for the gRPC variant's extra crates (tonic, prost, tower).
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rev=$(git rev-parse --short HEAD)
echo "commit $rev, $(rustc --version), $(nproc) CPUs"
echo
printf '| variant | clean release build | binary (stripped) | crates compiled |\n|---|---:|---:|---:|\n'
for variant in none http grpc; do
    dir=$work/$variant
    mkdir -p "$dir"
    git archive HEAD | tar -x -C "$dir"
    features=()
    case $variant in
        none) features=(--no-default-features --features mimalloc) ;;
        http) ;;
        grpc)
            sed -i 's/features = \["http-proto", "trace", "hyper-client"\]/features = ["grpc-tonic", "trace"]/' "$dir/Cargo.toml"
            sed -i 's/\.with_http()/.with_tonic()/' "$dir/src/telemetry/export.rs"
            grep -q grpc-tonic "$dir/Cargo.toml" && grep -q with_tonic "$dir/src/telemetry/export.rs" \
                || { echo "the gRPC edit no longer applies" >&2; exit 1; }
            ;;
    esac
    start=$(date +%s)
    (cd "$dir" && CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
        cargo build --release -q "${features[@]}" --bin greeting-service)
    took=$(( $(date +%s) - start ))
    bytes=$(stat -c %s "$dir/target/release/greeting-service")
    crates=$(find "$dir/target/release/deps" -name '*.rlib' | wc -l)
    printf '| %s | %d min %02d s | %d bytes (%s MB) | %d |\n' "$variant" $((took / 60)) $((took % 60)) \
        "$bytes" "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1e6 }')" "$crates"
    rm -rf "$dir/target"
done
