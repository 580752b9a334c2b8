#!/usr/bin/env python3
"""Where a server's user-space instructions per request go, grouped by crate.

    perf/callgrind-crates.py NAME=COMMAND [NAME=COMMAND...] [--n1 2000] [--n2 12000] [-c 8]

Each COMMAND (a program and its arguments, no shell) reads PORT (and WORKERS=1) from its environment, like
perf/peers/callgrind.sh. For each server: two callgrind runs with N1 and N2 POST /greet
requests over C keep-alive connections (oha), the self cost of every function from
`callgrind_annotate --inclusive=no`, grouped by the crate whose source the
instructions came from (the source file, so inlined code counts where it was written;
the symbol's crate where the file is unknown; this service's own code by module), and (run N2 - run N1) / (N2 - N1), so start-up and shutdown cancel.
Prints a markdown table, one column per server, and with two or more servers the
difference of the first and the second. Needs harness/ (`scripts/py
perf/callgrind-crates.py` installs it).
"""

import argparse
import collections
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request

from greeting_harness import free_port

BODY = b'{"name":"John"}'
# This repository's sources: instructions from them are this service's own code.
OURS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src") + "/"


def crate_of(symbol):
    """The crate a demangled symbol belongs to (its first path segment)."""
    s = symbol.strip()
    if s.startswith("0x"):
        return "unknown"
    # `<T as Trait>::f`, `<&T>::f`: the type's crate.
    # Dropping a value is the cost of its type: `core::ptr::drop_in_place<T>`.
    m = re.match(r"^core::ptr::drop_in_place<(.*)>$", s)
    if m:
        return crate_of(m.group(1))
    s = s.lstrip("<&*").replace("mut ", "").replace("dyn ", "")
    s = re.sub(r"^\(.*?\)\s*", "", s)
    head = re.split(r"::|<| as |\s|>", s, maxsplit=1)[0]
    # `<T as Trait>::f` with T a generic parameter: the trait's crate.
    if re.fullmatch(r"[A-Z]\w*", head) and " as " in s:
        return crate_of(s.split(" as ", 1)[1])
    if head == "greeting_service":
        # This service's own code, by module.
        parts = re.split(r"::", s)
        clean = [re.split(r"<|>| ", p)[0] for p in parts[1:]]
        depth = 2 if clean[0] in ("server", "domain", "telemetry", "json", "ids") and len(clean) > 2 else 1
        return "::".join([head] + clean[:depth]) if len(clean) > 1 else head
    if head in ("core", "alloc", "std"):
        return "core/alloc/std"
    if head.startswith(("mi_", "_mi_", "mi-", "mimalloc")):
        return "mimalloc"
    if "::" not in s:
        return "libc and other C"
    return head.replace("-", "_")


def crate_of_file(file):
    """The crate whose source the instructions came from (inlined code included),
    from the source file's path; None when the file is unknown."""
    m = re.search(r"/index\.crates\.io-[^/]+/([A-Za-z0-9_-]+?)-\d+\.\d+\.\d+[^/]*/", file)
    if m:
        name = m.group(1).replace("-", "_")
        return "mimalloc" if name == "libmimalloc_sys" else name
    if re.search(r"/library/(core|alloc|std)/", file):
        return "core/alloc/std"
    if file.startswith(OURS):
        m = re.match(r"((?:server|domain|telemetry|json|ids)/\w+|\w+)(?:\.rs|/)", file[len(OURS):])
        return "greeting_service::" + (m.group(1).replace("/", "::") if m else "?")
    if "/src/" in file and "/registry/" not in file and "/rustc/" not in file:
        return "(another server's own code)"
    if file.startswith("./") or "/sysdeps/" in file:
        return "libc and other C"
    return None


def annotate(path):
    """Self instructions per crate from one callgrind output file."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    totals = collections.Counter()
    for line in out.splitlines():
        # `1,234 (12.34%)  file:function [object]`
        m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*?)(?:\s+\[[^\]]*\])?$", line)
        if not m or m.group(2) == "PROGRAM TOTALS" or ":" not in m.group(2):
            continue
        file, function = m.group(2).split(":", 1)
        totals[crate_of_file(file) or crate_of(function)] += int(m.group(1).replace(",", ""))
    return totals


def run_once(cmd, n, conns, tmp):
    port = free_port()
    env = dict(os.environ, PORT=str(port), WORKERS="1", HOST="127.0.0.1", LOG_LEVEL="error")
    out = os.path.join(tmp, "cg.%p")
    proc = subprocess.Popen(
        # Not through a shell: valgrind would follow it, not the server it execs.
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *shlex.split(cmd)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/greet"
    for _ in range(300):
        try:
            req = urllib.request.Request(url, BODY, {"content-type": "application/json"})
            urllib.request.urlopen(req, timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        sys.exit(f"{cmd}: not serving on {port}")
    subprocess.run(
        ["oha", "--no-tui", "-n", str(n), "-c", str(conns), "-m", "POST",
         "-H", "content-type: application/json", "-d", BODY.decode(), url],
        check=True, stdout=subprocess.DEVNULL,
    )
    proc.send_signal(2)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    files = [os.path.join(tmp, f) for f in os.listdir(tmp) if f.startswith("cg.")]
    totals = collections.Counter()
    for f in files:
        totals.update(annotate(f))
        os.remove(f)
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=12000)
    ap.add_argument("-c", type=int, default=8, dest="conns")
    args = ap.parse_args()
    per_request = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.servers:
            name, cmd = spec.split("=", 1)
            print(f"{name}: {args.n1} then {args.n2} requests under callgrind", file=sys.stderr)
            a = run_once(cmd, args.n1, args.conns, tmp)
            b = run_once(cmd, args.n2, args.conns, tmp)
            span = args.n2 - args.n1
            per_request[name] = {k: (b[k] - a[k]) / span for k in set(a) | set(b)}
    names = list(per_request)
    crates = sorted(
        {c for v in per_request.values() for c in v},
        key=lambda c: -max(abs(v.get(c, 0)) for v in per_request.values()),
    )
    diff = len(names) >= 2
    head = "| crate | " + " | ".join(names) + (f" | {names[0]} - {names[1]} |" if diff else " |")
    print(head)
    print("|---" + "|---:" * (len(names) + diff) + "|")
    for c in crates:
        vals = [per_request[n].get(c, 0) for n in names]
        if max(abs(v) for v in vals) < 5:
            continue
        row = f"| {c} | " + " | ".join(f"{v:,.0f}" for v in vals)
        if diff:
            row += f" | {vals[0] - vals[1]:+,.0f}"
        print(row + " |")
    totals = [sum(per_request[n].values()) for n in names]
    row = "| **total** | " + " | ".join(f"**{t:,.0f}**" for t in totals)
    if diff:
        row += f" | **{totals[0] - totals[1]:+,.0f}**"
    print(row + " |")


if __name__ == "__main__":
    main()
