#!/usr/bin/env bash
# System calls per request, counted by strace: N POST /greet over C keep-alive
# connections (oha), each server with WORKERS=1 under `strace -c -f`.
#   perf/syscalls.sh NAME=BINARY...        (N=20000 C=8 by default)
# Prints, per server, the calls made at least once per 100 requests, per request.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
need_harness >&2  # free_port
N=${N:-20000} C=${C:-8}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for spec in "$@"; do
    name=${spec%%=*} bin=${spec#*=} port=$(free_port)
    PORT=$port WORKERS=1 HOST=127.0.0.1 LOG_LEVEL=error strace -c -f -o "$tmp/$name" "$bin" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null -X POST -H 'content-type: application/json' -d '{"name":"John"}' \
            "http://127.0.0.1:$port/greet" && break
        sleep 0.1
    done
    oha --no-tui -n "$N" -c "$C" -m POST -H 'content-type: application/json' -d '{"name":"John"}' \
        "http://127.0.0.1:$port/greet" >/dev/null
    # Stop the traced server (strace's child), not strace: SIGINT, then SIGTERM for
    # servers that only stop on that.
    pkill -INT -P "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    pkill -TERM -P "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$name ($N requests, $C connections): calls per request"
    # strace -c columns: % time, seconds, usecs/call, calls, [errors], syscall.
    awk -v n="$N" '$1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
        if ($4 / n >= 0.01) printf "  %-16s %.3f\n", $NF, $4 / n }' "$tmp/$name"
done
