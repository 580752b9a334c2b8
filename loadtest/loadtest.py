#!/usr/bin/env python3
"""Load-test scenarios for greeting-service (run through loadtest/run).

Every scenario starts the servers it needs on loopback, pins them to CPU 0 and the
load generator to CPU 1 where the machine has two CPUs or more, is bounded in time
and request count, and writes loadtest/results/<date>-<scenario>/ with the raw tool
output (JSON), summary.md and SVG charts. Only processes started here are signalled.
"""
import argparse
import datetime
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import svg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "greeting-service"
RESULTS = ROOT / "loadtest" / "results"
BODY = '{"name":"John"}'
CPUS = os.cpu_count() or 1
SERVER_CPU, LOAD_CPU = ("0", "1") if CPUS >= 2 else (None, None)


class Failure(Exception):
    """A check the run must pass (smoke): non-2xx, connection errors, thresholds."""


# ---------------------------------------------------------------- processes

def pinned(cmd, cpu):
    return (["taskset", "-c", cpu] + cmd) if cpu is not None else cmd


class Server:
    """The release binary on a free loopback port, stopped by PID."""

    def __init__(self, env=None, cpu=SERVER_CPU, workers=1):
        full = dict(os.environ, PORT="0", HOST="127.0.0.1", WORKERS=str(workers),
                    LOG_LEVEL="warn", MIMALLOC_ARENA_EAGER_COMMIT="0")
        full.update(env or {})
        full["LOG_LEVEL"] = "info"
        self.proc = subprocess.Popen(pinned([str(BIN)], cpu), env=full, stdout=subprocess.PIPE, text=True)
        self.addr = None
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if '"listening"' in line:
                self.addr = json.loads(line)["addr"]
                break
        if not self.addr:
            self.stop()
            raise Failure("server did not start")
        threading.Thread(target=self._drain, daemon=True).start()
        self.pid = self.proc.pid
        self.port = int(self.addr.rsplit(":", 1)[1])

    def _drain(self):
        for _ in self.proc.stdout:
            pass

    @property
    def url(self):
        return f"http://{self.addr}"

    def rss_kib(self):
        return proc_status(self.pid, "VmRSS")

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self):
        fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def proc_status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oha(url, duration=None, requests=None, conns=64, rate=None, http2=False, body=BODY,
        method="POST", content_type="application/json", expect_ok=True):
    """Runs oha (pinned to the load CPU) and returns its JSON summary plus a digest."""
    cmd = ["oha", "--no-tui", "--output-format", "json", "-c", str(conns), "-m", method]
    if duration:
        cmd += ["-z", duration]
    if requests:
        cmd += ["-n", str(requests)]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    if http2:
        cmd += ["--http2"]
    if body is not None:
        cmd += ["-H", f"content-type: {content_type}", "-d", body]
    out = subprocess.run(pinned(cmd + [url], LOAD_CPU), capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise Failure(f"oha failed: {out.stderr.strip()[:300]}")
    raw = json.loads(out.stdout)
    statuses = {int(k): v for k, v in raw.get("statusCodeDistribution", {}).items()}
    # Requests still in flight when -z ends are reported as aborted: not errors.
    errors = {k: v for k, v in (raw.get("errorDistribution") or {}).items() if "deadline" not in k}
    pct = raw.get("latencyPercentiles", {})
    digest = {
        "rps": raw["summary"]["requestsPerSec"],
        "p50_ms": (pct.get("p50") or 0) * 1e3,
        "p90_ms": (pct.get("p90") or 0) * 1e3,
        "p99_ms": (pct.get("p99") or 0) * 1e3,
        "p999_ms": (pct.get("p99.9") or 0) * 1e3,
        "statuses": statuses,
        "errors": errors,
        "requests": sum(statuses.values()),
    }
    if expect_ok:
        bad = {s: n for s, n in statuses.items() if not 200 <= s < 300}
        if bad or errors:
            raise Failure(f"non-2xx {bad} or connection errors {errors} for {url}")
    return raw, digest


# ---------------------------------------------------------------- results

class Run:
    """One scenario's output folder and its record of the machine and the command."""

    def __init__(self, scenario, args):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.dir = RESULTS / f"{stamp}-{scenario}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario
        self.lines = [f"# {scenario}", "", machine_facts(args), ""]

    def raw(self, name, data):
        (self.dir / f"{name}.json").write_text(json.dumps(data, indent=1))

    def text(self, *lines):
        self.lines.extend(lines)

    def table(self, header, rows):
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "---|" * len(header))
        for row in rows:
            self.lines.append("| " + " | ".join(str(c) for c in row) + " |")
        self.lines.append("")

    def chart(self, name, title, xlabel, ylabel, series, logx=False):
        (self.dir / f"{name}.svg").write_text(svg.line_chart(title, xlabel, ylabel, series, logx=logx))
        self.lines.append(f"![{title}]({name}.svg)")
        self.lines.append("")

    def finish(self):
        (self.dir / "summary.md").write_text("\n".join(self.lines) + "\n")
        print(f"results: {self.dir.relative_to(ROOT)}")


def tool_version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001 - a missing tool is reported as such
        return "not found"


def machine_facts(args):
    model = "unknown"
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return "\n".join([
        f"- machine: {model}, {CPUS} CPUs, kernel {platform.release()}",
        f"- commit: {commit or 'unknown'}; tools: {tool_version(['oha', '--version'])}, "
        f"{tool_version(['k6', 'version'])}, {tool_version(['haproxy', '-v'])}",
        f"- command: `loadtest/run {' '.join(sys.argv[1:])}`",
        f"- pinning: server CPU {SERVER_CPU}, load generator CPU {LOAD_CPU}" if SERVER_CPU else
        "- pinning: none (one CPU)",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
    ])


def fmt(x, digits=2):
    return f"{x:,.{digits}f}"


# ---------------------------------------------------------------- scenarios

def sweep(args):
    run = Run("sweep", args)
    rows, series = [], {"HTTP/1.1": [], "h2c": []}
    p99 = {"HTTP/1.1": [], "h2c": []}
    with Server() as server:
        for proto in ("HTTP/1.1", "h2c"):
            for c in args.concurrency:
                raw, d = oha(server.url + "/greet", duration=args.duration, conns=c, http2=proto == "h2c")
                run.raw(f"oha-{proto.replace('/', '')}-c{c}", raw)
                rows.append([proto, c, fmt(d["rps"], 0), fmt(d["p50_ms"]), fmt(d["p99_ms"]), fmt(d["p999_ms"])])
                series[proto].append((c, d["rps"]))
                p99[proto].append((c, d["p99_ms"]))
    run.table(["protocol", "connections", "rps", "p50 ms", "p99 ms", "p99.9 ms"], rows)
    run.chart("throughput", "Throughput vs concurrency", "connections", "requests/s", series, logx=True)
    run.chart("p99", "p99 latency vs concurrency", "connections", "ms", p99, logx=True)
    run.finish()


def saturation(server, duration):
    _, d = oha(server.url + "/greet", duration=duration, conns=64)
    return d["rps"]


def latency(args):
    run = Run("latency", args)
    with Server() as server:
        sat = saturation(server, args.duration)
        run.text(f"Saturation (64 connections, closed loop): {fmt(sat, 0)} requests/s", "")
        rows, series = [], {"p50": [], "p90": [], "p99": [], "p99.9": []}
        for share in (25, 50, 80, 95):
            rate = int(sat * share / 100)
            raw, d = oha(server.url + "/greet", duration=args.duration, conns=64, rate=rate)
            run.raw(f"oha-{share}pct", raw)
            rows.append([f"{share} %", rate, fmt(d["rps"], 0), fmt(d["p50_ms"]), fmt(d["p90_ms"]),
                         fmt(d["p99_ms"]), fmt(d["p999_ms"])])
            for key, name in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
                series[name].append((rate, d[key]))
    run.text("Open loop (`oha -q RATE --latency-correction`, 64 connections): latencies are "
             "corrected for coordinated omission.", "")
    run.table(["load", "target rps", "achieved rps", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms"], rows)
    run.chart("latency", "Latency percentiles vs request rate", "requests/s", "ms", series)
    run.finish()


def workers(args):
    run = Run("workers", args)
    rows, series = [], {"rps": []}
    for w in range(1, CPUS + 1):
        # Not pinned: the workers need CPUs of their own; the load generator shares them.
        with Server(workers=w, cpu=None) as server:
            raw, d = oha(server.url + "/greet", duration=args.duration, conns=64)
            run.raw(f"oha-workers{w}", raw)
            rows.append([w, fmt(d["rps"], 0), fmt(d["p99_ms"])])
            series["rps"].append((w, d["rps"]))
    base = series["rps"][0][1]
    run.text("Server and load generator share the machine's CPUs here, so the scaling "
             "per core is understated: with 2 CPUs, a second worker competes with oha.", "")
    run.table(["workers", "rps", "p99 ms", "vs 1 worker"],
              [r + [fmt(series["rps"][i][1] / base)] for i, r in enumerate(rows)])
    run.chart("workers", "Throughput vs WORKERS", "workers", "requests/s", series)
    run.finish()


HAPROXY = """global
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    retries 2
    option redispatch
    retry-on conn-failure empty-response response-timeout
frontend http
    bind 127.0.0.1:{port}
    default_backend greeting
backend greeting
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 1 rise 1 check
{servers}
"""


class Balancer:
    """HAProxy (Debian) in front of the given servers, config generated here."""

    def __init__(self, servers, cpu=LOAD_CPU):
        self.port = free_port()
        self.cfg = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
        lines = "\n".join(f"    server r{i} {s.addr}" for i, s in enumerate(servers))
        self.cfg.write(HAPROXY.format(port=self.port, servers=lines))
        self.cfg.close()
        self.proc = subprocess.Popen(pinned(["haproxy", "-db", "-f", self.cfg.name], cpu),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(1.2)  # first health checks

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        os.unlink(self.cfg.name)


def replicas(args):
    run = Run("replicas", args)
    rows, series, p99 = [], {"rps": []}, {"p99": []}
    for n in range(1, max(2, CPUS) + 1):
        servers = [Server(cpu=None) for _ in range(n)]
        lb = Balancer(servers, cpu=None)
        try:
            raw, d = oha(lb.url + "/greet", duration=args.duration, conns=64)
            run.raw(f"oha-replicas{n}", raw)
            rows.append([n, fmt(d["rps"], 0), fmt(d["p99_ms"])])
            series["rps"].append((n, d["rps"]))
            p99["p99"].append((n, d["p99_ms"]))
        finally:
            lb.stop()
            for s in servers:
                s.stop()
    run.table(["replicas", "rps", "p99 ms"], rows)
    run.chart("replicas", "Throughput vs replicas (behind HAProxy)", "replicas", "requests/s", series)
    run.chart("replicas-p99", "p99 vs replicas", "replicas", "ms", p99)
    # Failure: two replicas, one killed (SIGKILL, no drain) in the middle of a run.
    servers = [Server(cpu=None) for _ in range(2)]
    lb = Balancer(servers, cpu=None)
    try:
        outcome = kill_one_under_load(lb, servers[0], args.failover_seconds)
    finally:
        lb.stop()
        for s in servers:
            s.stop()
    run.raw("failover", outcome)
    run.text("", "### One replica killed mid-run", "",
             f"Two replicas; a client sends requests one after another for {args.failover_seconds} s "
             f"and replica 0 is killed with SIGKILL at the midpoint (no graceful drain).", "")
    run.table(["requests", "failed", "first failure after kill (s)", "last failure after kill (s)"],
              [[outcome["requests"], outcome["failed"], outcome["first_failure_s"], outcome["recovered_after_s"]]])
    run.text("HAProxy retries a request whose connection was refused or reset on the other "
             "replica (`retry-on conn-failure empty-response`) and marks the dead one down "
             "after one failed check (500 ms), so a client sees few or no errors.")
    run.finish()


def kill_one_under_load(lb, victim, seconds):
    req = (b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 15\r\n\r\n" + BODY.encode())
    start = time.time()
    kill_at = start + seconds / 2
    killed = None
    failures, total = [], 0
    while time.time() - start < seconds:
        if killed is None and time.time() >= kill_at:
            victim.proc.kill()
            killed = time.time()
        total += 1
        try:
            with socket.create_connection(("127.0.0.1", lb.port), timeout=5) as s:
                s.sendall(req)
                data = s.recv(4096)
            if not data.startswith(b"HTTP/1.1 200"):
                failures.append(time.time())
        except OSError:
            failures.append(time.time())
    after = [t - killed for t in failures if killed and t >= killed]
    return {
        "requests": total,
        "failed": len(failures),
        "first_failure_s": round(after[0], 3) if after else "-",
        "recovered_after_s": round(after[-1], 3) if after else 0,
    }


def connections(args):
    run = Run("connections", args)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.idle + 2000), hard))
    req = (b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 15\r\n\r\n" + BODY.encode())
    # Above the idle connections plus the load generator's: at the default cap
    # (10,000) the load generator's connections would wait for a slot.
    with Server(env={"MAX_CONNECTIONS": str(args.idle + 1000)}) as server:
        _, before_load = oha(server.url + "/greet", duration=args.duration, conns=64)
        time.sleep(0.5)
        rss_before = server.rss_kib()
        socks = []
        for _ in range(args.idle):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(req)
            if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                raise Failure("idle connection setup failed")
            socks.append(s)
        time.sleep(1)
        rss_after = server.rss_kib()
        raw, during = oha(server.url + "/greet", duration=args.duration, conns=64)
        run.raw("oha-with-idle", raw)
        for s in socks[:: max(1, len(socks) // 100)]:
            s.sendall(req)
            if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                raise Failure("an idle connection was not served")
        for s in socks:
            s.close()
    per = (rss_after - rss_before) / max(1, args.idle)
    run.table(["idle connections", "RSS before KiB", "RSS with them KiB", "KiB per connection",
               "rps before", "rps with them open"],
              [[args.idle, rss_before, rss_after, fmt(per), fmt(before_load["rps"], 0), fmt(during["rps"], 0)]])
    run.finish()


def histogram_p99(before, after):
    """p99 in ms from the delta of the /greet duration histogram between scrapes."""
    deltas = sorted((le, after.get(le, 0) - before.get(le, 0)) for le in after)
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return 0.0
    for le, count in deltas:
        if count >= 0.99 * total:
            return le * 1e3 if le != float("inf") else float("nan")
    return float("nan")


def scrape_buckets(url):
    text = subprocess.run(["curl", "-fsS", url + "/metrics"], capture_output=True, text=True, timeout=5).stdout
    buckets = {}
    for m in re.finditer(r'http_request_duration_seconds_bucket\{route="/greet",le="([^"]+)"\} (\d+)', text):
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        buckets[le] = int(m.group(2))
    return buckets


def soak(args):
    run = Run("soak", args)
    with Server() as server:
        sat = saturation(server, "3s")
        rate = int(sat * 0.5)
        client = {}

        def drive():
            client["raw"], client["digest"] = oha(server.url + "/greet", duration=f"{args.soak}s",
                                                  conns=64, rate=rate)

        load = threading.Thread(target=drive)
        samples = []
        load.start()
        t0 = time.time()
        prev = scrape_buckets(server.url)
        while load.is_alive():
            time.sleep(1)
            cur = scrape_buckets(server.url)
            samples.append({"t": round(time.time() - t0, 1), "rss_kib": server.rss_kib(), "fds": server.fds(),
                            "p99_ms": histogram_p99(prev, cur)})
            prev = cur
        load.join()
    run.raw("samples", samples)
    if "raw" not in client:
        raise Failure("the soak's load generator failed")
    run.raw("oha", client["raw"])
    d = client["digest"]
    rss = [s["rss_kib"] for s in samples]
    run.text(f"Constant load at {rate} requests/s (50 % of saturation) for {args.soak} s; one sample a second.",
             "", f"Client side (oha, corrected for coordinated omission): {d['requests']:,} requests, "
             f"p50 {fmt(d['p50_ms'])} ms, p99 {fmt(d['p99_ms'])} ms, p99.9 {fmt(d['p999_ms'])} ms.", "")
    run.text("p99 here is the server's own request duration (head to response), read every "
             "second from its /metrics histogram, so it is quantized to the bucket bounds "
             "(10 us, 25 us, 50 us, ...); the client-side p99 is in oha's output.", "")
    run.table(["samples", "RSS first KiB", "RSS last KiB", "RSS max KiB", "fds min-max",
               "server p99 ms, median of seconds"],
              [[len(samples), rss[0] if rss else 0, rss[-1] if rss else 0, max(rss) if rss else 0,
                f"{min(s['fds'] for s in samples)}-{max(s['fds'] for s in samples)}" if samples else "-",
                fmt(sorted(s["p99_ms"] for s in samples)[len(samples) // 2]) if samples else "-"]])
    run.chart("soak-rss", "Resident memory during the soak", "seconds", "KiB",
              {"RSS": [(s["t"], s["rss_kib"]) for s in samples]})
    run.chart("soak-p99", "Server-side p99 per second (histogram bucket bound)", "seconds", "ms",
              {"p99": [(s["t"], s["p99_ms"]) for s in samples]})
    run.chart("soak-fds", "Open file descriptors during the soak", "seconds", "fds",
              {"fds": [(s["t"], s["fds"]) for s in samples]})
    run.finish()


MIX = [
    ("valid", "POST", "/greet", BODY, "application/json", 200),
    ("unicode name", "POST", "/greet", '{"name":"Zoë 日本 😀 <b>"}', "application/json", 200),
    ("malformed JSON", "POST", "/greet", '{"name":', "application/json", 400),
    ("empty name", "POST", "/greet", '{"name":"   "}', "application/json", 400),
    ("oversize body", "POST", "/greet", '{"name":"' + "x" * 17000 + '"}', "application/json", 413),
    ("wrong method", "GET", "/greet", None, None, 405),
    ("wrong media type", "POST", "/greet", BODY, "text/plain", 415),
    ("unknown path", "GET", "/nope", None, None, 404),
]


def mixed(args):
    run = Run("mixed", args)
    rows = []
    with Server() as server:
        for name, method, path, body, ctype, status in MIX:
            cpu0 = server.cpu_seconds()
            raw, d = oha(server.url + path, duration=args.duration, conns=64, method=method, body=body,
                         content_type=ctype or "application/json", expect_ok=False)
            cpu = server.cpu_seconds() - cpu0
            run.raw(f"oha-{name.replace(' ', '-')}", raw)
            got = set(d["statuses"])
            # An oversize body is answered early and the connection closed: oha may
            # count the rest of its write as an error, never another status.
            if got - {status} or (d["errors"] and status != 413):
                raise Failure(f"{name}: expected only {status}, got {d['statuses']} {d['errors']}")
            rows.append([name, status, fmt(d["rps"], 0), fmt(cpu * 1e6 / max(1, d["requests"])),
                         fmt(d["p99_ms"])])
    happy = float(rows[0][3].replace(",", ""))
    run.text("Each request class on its own (closed loop, 64 connections): server CPU per "
             "request shows whether error paths cost more than the happy path.", "")
    run.table(["request", "status", "rps", "server CPU µs/req", "p99 ms"], rows)
    run.text("Error paths relative to a valid greeting: " + ", ".join(
        f"{r[0]} {float(r[3].replace(',', '')) / happy:.2f}x" for r in rows[1:]))
    run.finish()


def k6(args):
    run = Run("k6", args)
    with Server() as server:
        summary = run.dir / "k6-summary.json"
        env = dict(os.environ, BASE_URL=server.url, RATE=str(args.k6_rate), DURATION=args.duration)
        out = subprocess.run(pinned(["k6", "run", "--quiet", "--summary-export", str(summary),
                                     str(ROOT / "loadtest/k6/greet.js")], LOAD_CPU),
                             env=env, capture_output=True, text=True, timeout=3600)
    (run.dir / "k6-output.txt").write_text(out.stdout + out.stderr)
    data = json.loads(summary.read_text()) if summary.exists() else {}
    m = data.get("metrics", {})
    dur = m.get("http_req_duration", {})
    run.table(["requests", "failed rate", "p(90) ms", "p(95) ms", "max ms", "checks passed"],
              [[m.get("http_reqs", {}).get("count", 0), m.get("http_req_failed", {}).get("value", "-"),
                fmt(dur.get("p(90)", 0)), fmt(dur.get("p(95)", 0)), fmt(dur.get("max", 0)),
                m.get("checks", {}).get("passes", 0)]])
    run.text(f"k6 exit code {out.returncode} (non-zero: a threshold was crossed).")
    run.finish()
    if out.returncode != 0:
        raise Failure(f"k6 thresholds failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")


def smoke(args):
    """Every scenario in a few seconds each, for CI."""
    args.duration = "2s"
    args.concurrency = [1, 16, 256]
    args.idle = 1000
    args.soak = 5
    args.failover_seconds = 4
    args.k6_rate = 200
    for scenario in (sweep, latency, workers, replicas, connections, soak, mixed, k6):
        print(f"== smoke: {scenario.__name__}", flush=True)
        scenario(args)


SCENARIOS = {f.__name__: f for f in (sweep, latency, workers, replicas, connections, soak, mixed, k6, smoke)}


def main():
    ap = argparse.ArgumentParser(prog="loadtest/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=list(SCENARIOS) + ["all"])
    ap.add_argument("--duration", default="10s", help="each measurement (oha -z); default 10s")
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1, 4, 16, 64, 256, 1024], help="sweep connection counts")
    ap.add_argument("--idle", type=int, default=10_000, help="idle connections (connections)")
    ap.add_argument("--soak", type=int, default=300, help="soak length in seconds (default 300)")
    ap.add_argument("--failover-seconds", type=int, default=10, help="replicas: failure run length")
    ap.add_argument("--k6-rate", type=int, default=1000, help="k6 arrival rate per second")
    args = ap.parse_args()
    if not BIN.exists():
        sys.exit(f"{BIN} is missing: run through loadtest/run, which builds it")
    try:
        if args.scenario == "all":
            for name in ("sweep", "latency", "workers", "replicas", "connections", "soak", "mixed", "k6"):
                print(f"== {name}", flush=True)
                SCENARIOS[name](args)
        else:
            SCENARIOS[args.scenario](args)
    except Failure as e:
        sys.exit(f"loadtest failed: {e}")


if __name__ == "__main__":
    main()
