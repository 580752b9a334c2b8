#!/usr/bin/env python3
"""HTTP/2 (h2c, multiplexed) beside HTTP/1.1, in one run, with h2load.

    perf/h2load.py [--bin target/release/greeting-service] [--peer NAME=PATH]...
                   [--rounds 3] [--duration 8] [--connections 64] [--streams 16]
                   [--callgrind] [--json OUT]

For every server and round, interleaved: the server runs with WORKERS=1 pinned to
CPU 0, h2load (Debian nghttp2-client) pinned to CPU 1 sends `POST /greet
{"name":"John"}` for --duration seconds in three modes:

  h1     HTTP/1.1, one request in flight per connection (`--h1 -m 1`)
  h1-p   HTTP/1.1 pipelined, --streams requests in flight per connection (`--h1 -m N`)
  h2     h2c with prior knowledge, --streams concurrent streams per connection (`-m N`)

Reported per mode (medians over rounds): requests/s, server CPU µs per request
(utime+stime of the server from /proc), h2load's own CPU share and a `client-bound`
mark when it was 90 % busy or more, and the share of non-2xx answers.

--callgrind also counts user-space instructions per request of the project (not the
peers) under valgrind for each mode: (I(N2) - I(N1)) / (N2 - N1) with 8 connections,
so start-up cancels out. Only processes this script starts are signalled. Needs
harness/ (`scripts/py perf/h2load.py` installs it).
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from greeting_harness import cpu_seconds, free_port

BODY = b'{"name":"John"}'


def wait_ready(port, proc, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/greet", data=BODY,
                headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=1) as r:
                if json.loads(r.read()) == {"message": "Hello, John!"}:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("server did not answer")


def start(path, port, cpu="0", wrapper=()):
    env = dict(os.environ, PORT=str(port), WORKERS="1", HOST="127.0.0.1", LOG_LEVEL="error")
    cmd = [*wrapper, path] if wrapper else ["taskset", "-c", cpu, path]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def h2load_args(mode, limit, a, body_file, port, connections=None):
    """h2load's command line; `limit` is `["-D", seconds]` or `["-n", requests]`."""
    args = ["h2load", *limit, "-t", "1", "-c", str(connections or a.connections),
            "-H", "content-type: application/json", "-d", body_file]
    if mode == "h1":
        args += ["--h1", "-m", "1"]
    elif mode == "h1-p":
        args += ["--h1", "-m", str(a.streams)]
    else:
        args += ["-m", str(a.streams)]
    return args + [f"http://127.0.0.1:{port}/greet"]


def parse_h2load(out):
    done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    if not (done and codes and rps):
        raise SystemExit(f"cannot read h2load's output:\n{out}")
    return {
        "done": int(done.group(3)),
        "succeeded": int(done.group(4)),
        "failed": int(done.group(5)),
        "non2xx": sum(int(codes.group(i)) for i in (2, 3, 4)),
        "rps": float(rps.group(1)),
    }


def measure(path, mode, a, body_file):
    port = free_port()
    server = start(path, port)
    try:
        wait_ready(port, server)
        # Warm-up: the same load for two seconds.
        subprocess.run(["taskset", "-c", "1", *h2load_args(mode, ["-D", "2"], a, body_file, port)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        before = cpu_seconds(server.pid)
        t0 = os.times()
        began = time.monotonic()
        out = subprocess.run(["taskset", "-c", "1",
                              *h2load_args(mode, ["-D", str(a.duration)], a, body_file, port)],
                             capture_output=True, text=True, check=False).stdout
        wall = time.monotonic() - began
        t1 = os.times()
        after = cpu_seconds(server.pid)
    finally:
        stop(server)
    r = parse_h2load(out)
    client_cpu = (t1.children_user + t1.children_system) - (t0.children_user + t0.children_system)
    r["server_us_per_req"] = (after - before) * 1e6 / max(r["done"], 1)
    r["server_cpu_pct"] = (after - before) / wall * 100
    r["client_cpu_pct"] = client_cpu / wall * 100
    r["client_bound"] = r["client_cpu_pct"] >= 90
    return r


def instructions(path, mode, a, body_file, n1=4000, n2=24000):
    """User-space instructions per request of `path` in `mode`, under callgrind."""
    totals = []
    for n in (n1, n2):
        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "cg.out")
            server = start(path, port, wrapper=["valgrind", "--tool=callgrind",
                                                f"--callgrind-out-file={out}"])
            try:
                wait_ready(port, server, limit=60)
                subprocess.run(h2load_args(mode, ["-n", str(n)], a, body_file, port, connections=8),
                               capture_output=True, check=True)
            finally:
                stop(server)
            summary = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True).stdout
            m = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", summary)
            totals.append(int(m.group(1).replace(",", "")))
    return round((totals[1] - totals[0]) / (n2 - n1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/greeting-service")
    p.add_argument("--peer", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--modes", default="h1,h1-p,h2")
    p.add_argument("--callgrind", action="store_true")
    p.add_argument("--json")
    a = p.parse_args()
    for tool in ["h2load", "taskset"] + (["valgrind"] if a.callgrind else []):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (h2load: apt-get install nghttp2-client)")
    servers = [("project", a.bin)] + [tuple(s.split("=", 1)) for s in a.peer]
    modes = a.modes.split(",")
    results = {}
    with tempfile.NamedTemporaryFile(suffix=".json") as body:
        body.write(BODY)
        body.flush()
        for rnd in range(a.rounds):
            # Rotate the order every round so drift in the machine spreads evenly.
            order = [(s, m) for s in servers for m in modes]
            order = order[rnd % len(order):] + order[:rnd % len(order)]
            for (name, path), mode in order:
                r = measure(path, mode, a, body.name)
                results.setdefault((name, mode), []).append(r)
                print(f"[round {rnd + 1}] {name:12} {mode:5} {r['rps']:>10,.0f} req/s "
                      f"{r['server_us_per_req']:5.2f} µs/req server {r['server_cpu_pct']:3.0f}% "
                      f"client {r['client_cpu_pct']:3.0f}% failed {r['failed']} non-2xx {r['non2xx']}",
                      file=sys.stderr)
        cg = {}
        if a.callgrind:
            for mode in modes:
                cg[mode] = instructions(a.bin, mode, a, body.name)
    rows = []
    print(f"\nh2load {a.connections} connections, {a.streams} streams (h2) or pipelined requests "
          f"(h1-p) per connection, WORKERS=1, server on CPU 0, h2load on CPU 1, "
          f"{a.duration}s x {a.rounds} rounds, medians\n")
    print("| server | mode | req/s | server CPU µs/req | server CPU % | h2load CPU % | failed | non-2xx |"
          + (" instr/req (callgrind) |" if cg else ""))
    print("|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if cg else ""))
    for (name, _), mode in [((n, p_), m) for n, p_ in servers for m in modes]:
        rs = results[(name, mode)]
        med = {k: statistics.median(r[k] for r in rs)
               for k in ("rps", "server_us_per_req", "server_cpu_pct", "client_cpu_pct")}
        bound = any(r["client_bound"] for r in rs)
        row = {"server": name, "mode": mode, **med, "client_bound": bound,
               "failed": sum(r["failed"] for r in rs), "non2xx": sum(r["non2xx"] for r in rs),
               "rps_range": [min(r["rps"] for r in rs), max(r["rps"] for r in rs)],
               "rounds": rs}
        if cg and name == "project":
            row["instructions"] = cg[mode]
        rows.append(row)
        mark = " (client-bound)" if bound else ""
        extra = f" {cg[mode]:,} |" if cg and name == "project" else (" - |" if cg else "")
        print(f"| {name} | {mode} | {med['rps']:,.0f}{mark} | {med['server_us_per_req']:.2f} | "
              f"{med['server_cpu_pct']:.0f} | {med['client_cpu_pct']:.0f} | {row['failed']} | "
              f"{row['non2xx']} |{extra}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=1)
    if any(r["failed"] or r["non2xx"] for r in rows):
        raise SystemExit("some requests failed")


if __name__ == "__main__":
    main()
