# Shared helpers for the scripts in this folder. Source it; do not run it.

# Prints a section header.
section() { printf '\n== %s\n' "$*"; }

# Fails with a clear message.
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs Debian packages that are missing (by the command they provide).
# Usage: need_apt COMMAND PACKAGE [COMMAND PACKAGE ...]
need_apt() {
    local missing=()
    while [ $# -ge 2 ]; do
        command -v "$1" >/dev/null 2>&1 || missing+=("$2")
        shift 2
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        die "need ${missing[*]} (apt-get install -y ${missing[*]}) and not root"
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# Installs a pinned PyPI package when its command is missing.
# Usage: need_pip COMMAND REQUIREMENT
need_pip() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2 from PyPI"
    python3 -m pip install -q --disable-pip-version-check "$2" || die "pip install $2 failed"
    command -v "$1" >/dev/null 2>&1 || die "$2 installed but $1 is not on PATH"
}

# Installs a crate's binary when its command is missing (slow: cached in ~/.cargo/bin).
# Usage: need_cargo COMMAND CRATE[@VERSION]
need_cargo() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2 with cargo install (several minutes the first time)"
    cargo install --locked -q "$2" || die "cargo install $2 failed"
}

# Starts BIN with PORT=0 plus the given environment, logging to FILE, and sets
# SERVER_PID and SERVER_ADDR from its "listening" line.
# Usage: start_server BIN LOGFILE [VAR=VALUE ...]
start_server() {
    local bin=$1 log=$2
    shift 2
    env PORT=0 HOST=127.0.0.1 "$@" "$bin" >"$log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 200); do
        SERVER_ADDR=$(grep -o '"addr":"[^"]*"' "$log" 2>/dev/null | head -1 | cut -d'"' -f4 || true)
        [ -n "$SERVER_ADDR" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log"; die "$bin exited at start"; }
        sleep 0.05
    done
    die "$bin did not log its address"
}

# Stops the server started by start_server (SIGTERM, then waits).
stop_server() {
    [ -n "${SERVER_PID:-}" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
