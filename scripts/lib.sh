# Shared helpers for the scripts in this repository. Source it; do not run it.
#
# Every tool a script needs is installed by the `need_*` helpers below when it is
# missing *or at another version*: a pin is checked by version, not by the mere
# presence of a command, so a warm machine cannot hide a pin a fresh one cannot meet.
#   need_apt      Debian packages (as root; the release pins their versions)
#   need_pip      PyPI packages, pinned, in the project's own virtual environment
#                 (.tools/venv, ignored by git): a stock Debian or Ubuntu Python
#                 refuses `pip install` into the system interpreter (PEP 668)
#   need_harness  the repository's Python helpers (harness/: greeting_harness) and the
#                 dependencies harness/pyproject.toml pins, in that environment
#   need_cargo    crates' binaries, pinned, in ~/.cargo/bin

# Prints a section header.
section() { printf '\n== %s\n' "$*"; }

# Fails with a clear message.
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Tools installed for this repository only (virtual environment, downloads).
TOOLS_DIR=${TOOLS_DIR:-$REPO_ROOT/.tools}
VENV=$TOOLS_DIR/venv

# Installs Debian packages that are missing.
# Usage: need_apt PACKAGE[:COMMAND] ...   (COMMAND, when given, must then be on PATH)
need_apt() {
    local missing=() spec pkg
    for spec in "$@"; do
        pkg=${spec%%:*}
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing Debian packages: ${missing[*]}"
        [ "$(id -u)" -eq 0 ] || die "need ${missing[*]} (apt-get install -y ${missing[*]}) and not root"
        if [ -z "${APT_UPDATED:-}" ]; then
            apt-get update -qq >/dev/null || die "apt-get update failed"
            APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
            || die "apt-get install ${missing[*]} failed"
    fi
    for spec in "$@"; do
        case $spec in
            *:*) command -v "${spec#*:}" >/dev/null 2>&1 || die "${spec%%:*} is installed but ${spec#*:} is not on PATH" ;;
        esac
    done
}

# Creates the project's virtual environment once and puts it first on PATH.
need_venv() {
    command -v python3 >/dev/null 2>&1 || need_apt python3
    if [ ! -x "$VENV/bin/python" ]; then
        # Debian's python3 lacks the venv module until python3-venv is installed.
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt python3-venv
        echo "creating the virtual environment $VENV"
        mkdir -p "$TOOLS_DIR"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null \
            || die "cannot upgrade pip in $VENV"
    fi
    case ":$PATH:" in
        *":$VENV/bin:"*) ;;
        *) export PATH="$VENV/bin:$PATH" ;;
    esac
}

# Installs pinned PyPI packages into the virtual environment unless that exact
# version is already there.
# Usage: need_pip NAME==VERSION ...   or   need_pip -r REQUIREMENTS_FILE (with hashes)
need_pip() {
    need_venv
    if [ "$1" = "-r" ]; then
        local file=$2 req
        # Every line NAME==VERSION [--hash=...] must be satisfied exactly.
        while read -r req _; do
            case $req in ""|\#*) continue ;; esac
            pip_has "$req" || {
                echo "installing $file from PyPI"
                "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$file" \
                    || die "pip install -r $file failed"
                break
            }
        done <"$file"
        return 0
    fi
    local want=() req
    for req in "$@"; do
        case $req in *==*) ;; *) die "need_pip: $req is not pinned (NAME==VERSION)" ;; esac
        pip_has "$req" || want+=("$req")
    done
    [ ${#want[@]} -eq 0 ] && return 0
    echo "installing from PyPI: ${want[*]}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${want[@]}" || die "pip install ${want[*]} failed"
    for req in "${want[@]}"; do pip_has "$req" || die "$req did not install at that version"; done
}

# True when NAME==VERSION is installed in the virtual environment.
pip_has() {
    "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
name, _, want = sys.argv[1].partition("==")
try:
    sys.exit(0 if version(name) == want else 1)
except PackageNotFoundError:
    sys.exit(1)
PY
}

# Installs a crate's binary at a pinned version unless `COMMAND --version` already
# reports it (slow the first time: the binary is cached in ~/.cargo/bin).
# Usage: need_cargo COMMAND CRATE VERSION
need_cargo() {
    local cmd=$1 crate=$2 version=$3
    export PATH="$HOME/.cargo/bin:$PATH"
    if command -v "$cmd" >/dev/null 2>&1 && "$cmd" --version 2>/dev/null | grep -qF " $version"; then
        return 0
    fi
    echo "installing $crate $version with cargo install (several minutes the first time)"
    cargo install --locked -q "$crate@$version" || die "cargo install $crate@$version failed"
    "$cmd" --version 2>/dev/null | grep -qF " $version" || die "$cmd --version does not report $version"
}

# Installs harness/ (the package greeting_harness, which the Python scripts, tests and
# load harness import) into the virtual environment, editable, so that they always
# run the checked-out code, with the dependencies harness/pyproject.toml pins; unless
# this checkout's harness is installed there at its version with every pin met.
need_harness() {
    need_venv
    harness_has && return 0
    echo "installing harness/ (greeting_harness) and its pinned dependencies from PyPI"
    local out
    # Quiet unless it fails: setuptools warns about every editable install.
    out=$("$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO_ROOT/harness" 2>&1) \
        || { printf '%s\n' "$out" >&2; die "pip install -e harness failed"; }
    harness_has || die "harness/ did not install at its version with its pinned dependencies"
}

# True when greeting_harness imports from this checkout's harness/ at the version of
# harness/pyproject.toml, with each dependency it pins at that version.
harness_has() {
    "$VENV/bin/python" - "$REPO_ROOT/harness" <<'PY' 2>/dev/null
import sys, tomllib
from importlib.metadata import version, PackageNotFoundError
from importlib.util import find_spec
from pathlib import Path
sys.path = [p for p in sys.path if p not in ("", ".")]  # not a copy in the working directory
root = Path(sys.argv[1]).resolve()
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
try:
    spec = find_spec("greeting_harness")
    ok = spec is not None and Path(spec.origin).resolve().is_relative_to(root)
    ok = ok and version(project["name"]) == project["version"]
    for req in project["dependencies"]:
        name, _, want = req.partition("==")
        ok = ok and version(name) == want
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

# Prints the address of a server started in the background as PID with its output in
# LOG, from its "listening" record, once it is there (greeting_harness reads it); fails
# with the log when PID exits first, or after SECONDS (60).
# Usage: addr=$(server_addr LOG PID [SECONDS])   (after need_harness)
server_addr() {
    "$VENV/bin/python" -m greeting_harness addr "$1" "$2" ${3:+--timeout "$3"}
}

# A port free for TCP and UDP on loopback, for a server that must be given one
# (greeting_harness.free_port: below the ephemeral range).
free_port() {
    need_harness >&2
    "$VENV/bin/python" -m greeting_harness free-port "$@"
}

# Starts BIN with PORT=0 plus the given environment, logging to FILE, and sets
# SERVER_PID and SERVER_ADDR from its "listening" line. The server is this shell's
# child (stop_server waits for it); only the reading of the address is the harness's.
# Usage: start_server BIN LOGFILE [VAR=VALUE ...]
start_server() {
    local bin=$1 log=$2
    shift 2
    need_harness
    env PORT=0 HOST=127.0.0.1 "$@" "$bin" >"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_ADDR=$(server_addr "$log" "$SERVER_PID") || die "$bin did not log its address"
}

# Stops the server started by start_server (SIGTERM, then waits).
stop_server() {
    [ -n "${SERVER_PID:-}" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
