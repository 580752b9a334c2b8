"""Processes, CPU accounting, /metrics scraping and load generators for loadtest.py.

Everything here targets loopback only, is bounded in time, and signals only the
processes it started (by PID). Starting the service, free ports and reading a
process's CPU time and memory are harness/'s (greeting_harness), shared with the
other scripts.
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from greeting_harness import Service, ServiceError, cpu_seconds, rss_kib

ROOT = Path(__file__).resolve().parent.parent
CPUS = os.cpu_count() or 1
BODY = '{"name":"John"}'
# A generator (or server) whose cores were this busy is the limit of a result.
BOUND = 0.90


class Failure(Exception):
    """A check the run must pass: non-2xx, connection errors, thresholds, assertions."""


# ---------------------------------------------------------------- CPU accounting

def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def machine_cpu():
    """Per-CPU (busy, total) jiffies from /proc/stat, keyed by CPU number."""
    out = {}
    for line in open("/proc/stat"):
        m = re.match(r"cpu(\d+) (.*)", line)
        if m:
            v = [int(x) for x in m.group(2).split()]
            idle = v[3] + v[4]
            total = sum(v[:8])
            out[int(m.group(1))] = (total - idle, total)
    return out


def busy_between(a, b, cpus=None):
    """Fraction (0..1) of the given CPUs (all by default) that was busy from a to b."""
    keys = [c for c in (cpus if cpus is not None else a.keys()) if c in a and c in b]
    busy = sum(b[c][0] - a[c][0] for c in keys)
    total = sum(b[c][1] - a[c][1] for c in keys)
    return busy / total if total > 0 else 0.0


def parse_cpus(spec):
    """'0', '0-1', '0,2' -> [0, 1, 2]; '' or None -> None (not pinned)."""
    if spec in (None, "", "none", "-"):
        return None
    cpus = []
    for part in str(spec).split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def pinned(cmd, cpus):
    return (["taskset", "-c", ",".join(map(str, cpus))] + cmd) if cpus else cmd


# ---------------------------------------------------------------- the service

class Server(Service):
    """The service binary on loopback (greeting_harness.Service), pinned to `cpus`.

    `settings` is the service's own statement of its effective configuration (the
    "listening" log line), so a summary records what the server ran with, not what
    the script meant to pass; `env` is what the script passed."""

    def __init__(self, binary, env=None, cpus=None, host="127.0.0.1", port=0, workers=1):
        self.env = {"WORKERS": str(workers), "LOG_LEVEL": "info"}
        self.env.update(env or {})
        self.cpus = cpus
        self.workers = int(self.env["WORKERS"])
        try:
            super().__init__(pinned([str(binary)], cpus), self.env, host=host, port=port, keep=20, timeout=20)
        except ServiceError as e:
            raise Failure(f"server did not start ({binary}, env {self.env}): {e}") from e

    @property
    def url(self):
        return f"http://{self.addr}"

    def cpu(self):
        return cpu_seconds(self.pid)

    def rss_kib(self):
        return rss_kib(self.pid)

    def fds(self):
        return proc_fds(self.pid)

    def send(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def shutdown_line(self):
        for line in reversed(self.lines):
            if "shutdown complete" in line:
                try:
                    d = json.loads(line)
                    return {"drained": d.get("drained"), "cut": d.get("cut")}
                except ValueError:
                    pass
        return None


def http_get(host, port, path, timeout=5):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


METRIC = re.compile(r'^([a-z_]+)\{([^}]*)\} ([0-9.eE+-]+|NaN|\+Inf)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')


class Scrape:
    """One GET /metrics: request counts by route/status, duration histograms by route."""

    def __init__(self, text):
        self.requests = {}  # (route, status) -> count
        self.buckets = {}  # route -> {le: count}
        self.gauges = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            m = METRIC.match(line)
            if not m:
                parts = line.split()
                if len(parts) == 2:
                    try:
                        self.gauges[parts[0]] = float(parts[1])
                    except ValueError:
                        pass
                continue
            name, labels, value = m.group(1), dict(LABEL.findall(m.group(2))), float(m.group(3))
            if name == "http_requests_total":
                key = (labels.get("route"), labels.get("status"))
                self.requests[key] = self.requests.get(key, 0) + value
            elif name == "http_request_duration_seconds_bucket":
                le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
                self.buckets.setdefault(labels["route"], {})[le] = value

    @classmethod
    def of(cls, server_or_addr):
        host, port = (server_or_addr.host, server_or_addr.port) if hasattr(server_or_addr, "host") \
            else server_or_addr
        status, text = http_get(host, port, "/metrics")
        if status != 200:
            raise Failure(f"/metrics answered {status}")
        return cls(text)


class ServerDelta:
    """What the servers themselves saw between two scrapes (summed over replicas)."""

    def __init__(self, before, after):
        self.statuses = {}
        self.buckets = {}
        for b, a in zip(before, after):
            for key, v in a.requests.items():
                if key[0] == "/metrics":
                    continue
                d = v - b.requests.get(key, 0)
                if d:
                    self.statuses[key[1]] = self.statuses.get(key[1], 0) + int(d)
            for route, bk in a.buckets.items():
                if route == "/metrics":
                    continue
                acc = self.buckets.setdefault(route, {})
                for le, v in bk.items():
                    acc[le] = acc.get(le, 0) + v - b.buckets.get(route, {}).get(le, 0)
        self.requests = sum(self.statuses.values())

    def merged_buckets(self):
        acc = {}
        for bk in self.buckets.values():
            for le, v in bk.items():
                acc[le] = acc.get(le, 0) + v
        return acc

    def quantile_ms(self, q, route=None):
        bk = self.buckets.get(route, {}) if route else self.merged_buckets()
        return histogram_quantile(q, bk) * 1e3 if bk else float("nan")


def histogram_quantile(q, buckets):
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds
    the q-th observation (the lowest bucket interpolates from 0; the +Inf bucket
    answers the highest finite bound)."""
    les = sorted(buckets)
    if not les:
        return float("nan")
    total = buckets[les[-1]]
    if total <= 0:
        return float("nan")
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le in les:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


# ---------------------------------------------------------------- load generators

WRK_LUA = """
wrk.method = {method}
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def lua_str(s):
    return "nil" if s is None else '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Load:
    """What to send: one generator kind, its shape, and the request."""

    def __init__(self, client="wrk", conns=64, seconds=5.0, rate=None, streams=1, procs=1, threads=1,
                 method="POST", path="/greet", body=BODY, ctype="application/json", cpus=None, env=None, h2=False):
        self.env = env or {}
        self.h2 = h2
        self.client, self.conns, self.seconds, self.rate = client, conns, seconds, rate
        self.streams, self.procs, self.threads = streams, procs, threads
        self.method, self.path, self.body, self.ctype, self.cpus = method, path, body, ctype, cpus
        if client == "wrk" and rate:
            raise ValueError("wrk is closed loop; use oha for a fixed rate")
        if client == "wrk" and streams > 1:
            raise ValueError("wrk speaks HTTP/1.1 only")

    @property
    def http2(self):
        return self.h2 or self.streams > 1 or self.client == "h2load"

    def describe(self):
        shape = f"{self.client} x{self.procs}" if self.procs > 1 else self.client
        shape += " h2" if self.http2 and self.client == "oha" else ""
        shape += f" {self.threads}t" if self.threads > 1 else ""
        return shape

    def cores(self):
        """How many cores the generator could use: its CPU set, else its threads."""
        threads = self.procs * max(1, min(self.threads, max(1, self.conns // self.procs)))
        if self.client == "k6":
            threads = max(1, self.threads)
        return min(len(self.cpus), threads) if self.cpus else min(CPUS, threads)

    def commands(self, url, tmp):
        if self.client == "k6":
            # RATE, DURATION and the thresholds come from self.env (loadtest/k6/greet.js).
            return [["k6", "run", "--quiet", "--no-color", "--summary-export", str(Path(tmp) / "k6.json"),
                     "--summary-trend-stats", "avg,min,med,max,p(90),p(99),p(99.9)",
                     str(ROOT / "loadtest" / "k6" / "greet.js")]]
        split = [self.conns // self.procs + (1 if i < self.conns % self.procs else 0) for i in range(self.procs)]
        cmds = []
        for i, conns in enumerate(split):
            if conns == 0:
                continue
            if self.client == "oha":
                cmd = ["oha", "--no-tui", "--output-format", "json", "-c", str(conns), "-z", f"{self.seconds}s",
                       "-w", "--worker-threads", str(max(1, self.threads)), "-m", self.method]
                if self.rate:
                    cmd += ["-q", f"{self.rate / self.procs:.1f}", "--latency-correction"]
                if self.http2:
                    cmd += ["--http2", "-p", str(self.streams)]
                if self.body is not None:
                    cmd += ["-H", f"content-type: {self.ctype}", "-d", self.body]
                cmds.append(cmd + [url + self.path])
            elif self.client == "wrk":
                lua = Path(tmp) / "wrk.lua"
                headers = f'wrk.headers["Content-Type"] = {lua_str(self.ctype)}' if self.body is not None else ""
                lua.write_text(WRK_LUA.format(method=lua_str(self.method), body=lua_str(self.body),
                                              headers=headers))
                threads = max(1, min(self.threads, conns))
                cmds.append(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{max(1, round(self.seconds))}s",
                             "-s", str(lua), url + self.path])
            elif self.client == "h2load":
                cmd = ["h2load", "-c", str(conns), "-m", str(self.streams), "-t", str(max(1, min(self.threads, conns))),
                       "-D", str(max(1, round(self.seconds)))]
                if self.rate:
                    raise ValueError("h2load runs closed loop here; use oha for a fixed rate")
                if self.body is not None:
                    bodyfile = Path(tmp) / "body"
                    bodyfile.write_text(self.body)
                    cmd += ["-d", str(bodyfile), "-H", f"content-type: {self.ctype}"]
                cmds.append(cmd + [url + self.path])
            else:
                raise ValueError(f"unknown client {self.client}")
        return cmds


def parse_oha(text):
    raw = json.loads(text)
    statuses = {int(k): v for k, v in (raw.get("statusCodeDistribution") or {}).items()}
    errors = dict(raw.get("errorDistribution") or {})
    pct = raw.get("latencyPercentiles") or {}
    return {
        "requests": sum(statuses.values()),
        "statuses": statuses,
        "errors": errors,
        "p50": (pct.get("p50") or 0) * 1e3, "p90": (pct.get("p90") or 0) * 1e3,
        "p99": (pct.get("p99") or 0) * 1e3, "p999": (pct.get("p99.9") or 0) * 1e3,
        "max": (raw["summary"].get("slowest") or 0) * 1e3,
        "seconds": raw["summary"]["total"],
    }


def parse_wrk(text):
    m = re.search(r"^WRKJSON (.*)$", text, re.M)
    if not m:
        raise Failure(f"wrk printed no summary: {text[-500:]}")
    d = json.loads(m.group(1))
    errors = {k: d[k] for k in ("connect", "read", "write", "timeout") if d[k]}
    ok = d["requests"] - d["status"]
    # wrk counts responses, not their codes: a non-2xx/3xx count is all it knows.
    statuses = {200: ok}
    if d["status"]:
        statuses[0] = d["status"]
    return {"requests": d["requests"], "statuses": statuses, "errors": errors,
            "p50": d["p50"] / 1e3, "p90": d["p90"] / 1e3, "p99": d["p99"] / 1e3, "p999": d["p999"] / 1e3,
            "max": d["max"] / 1e3, "seconds": d["duration_us"] / 1e6}


def parse_h2load(text):
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", text)
    fin = re.search(r"finished in ([0-9.]+)(m?s)", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    tfr = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if not (req and fin and codes):
        raise Failure(f"h2load printed no summary: {text[-500:]}")

    def ms(v):
        for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
            if v.endswith(unit):
                return float(v[: -len(unit)]) * f
        return float("nan")

    done = int(req.group(3))
    statuses = {200: int(codes.group(1))}
    for i, cls in ((2, 300), (3, 400), (4, 500)):
        if int(codes.group(i)):
            statuses[cls] = int(codes.group(i))
    errors = {}
    for name, i in (("failed", 5), ("errored", 6), ("timeout", 7)):
        if int(req.group(i)):
            errors[name] = int(req.group(i))
    # failed counts non-2xx too; keep only the transport failures as errors
    if "failed" in errors:
        errors["failed"] -= sum(v for k, v in statuses.items() if k != 200)
        if errors["failed"] <= 0:
            del errors["failed"]
    secs = float(fin.group(1)) / (1e3 if fin.group(2) == "ms" else 1)
    mean = ms(tfr.group(3)) if tfr else float("nan")
    # h2load reports no percentiles: mean and max stand in, marked as such in tables.
    return {"requests": done, "statuses": statuses, "errors": errors, "p50": float("nan"),
            "p90": float("nan"), "p99": float("nan"), "p999": float("nan"), "mean": mean,
            "max": ms(tfr.group(2)) if tfr else float("nan"), "seconds": secs}


def parse_k6(text, summary_path):
    d = json.loads(Path(summary_path).read_text())
    m = d.get("metrics", {})
    dur = m.get("http_req_duration", {})
    reqs = int(m.get("http_reqs", {}).get("count", 0))
    failed = m.get("http_req_failed", {})
    # http_req_failed is a rate: "passes" counts the failed requests
    nfail = int(failed.get("passes", 0))
    checks = m.get("checks", {})
    return {"requests": reqs, "statuses": {200: reqs - nfail}, "errors": {"failed": nfail} if nfail else {},
            "p50": dur.get("med"), "p90": dur.get("p(90)"), "p99": dur.get("p(99)"), "p999": dur.get("p(99.9)"),
            "max": dur.get("max"), "seconds": None,
            "checks_passed": checks.get("passes"), "checks_failed": checks.get("fails"),
            "thresholds": {k: v.get("thresholds") for k, v in m.items() if v.get("thresholds")}}


PARSERS = {"oha": parse_oha, "wrk": parse_wrk, "h2load": parse_h2load}


def merge_client(parts):
    """Several generator processes into one view. Percentiles of identical, evenly
    split processes are combined as a request-weighted mean of each percentile (an
    approximation; exact for one process)."""
    out = {"requests": sum(p["requests"] for p in parts), "statuses": {}, "errors": {},
           "seconds": max(p["seconds"] for p in parts)}
    for p in parts:
        for k, v in p["statuses"].items():
            out["statuses"][k] = out["statuses"].get(k, 0) + v
        for k, v in p["errors"].items():
            out["errors"][k] = out["errors"].get(k, 0) + v
    weight = max(1, out["requests"])
    for key in ("p50", "p90", "p99", "p999", "mean", "max"):
        vals = [(p.get(key), p["requests"]) for p in parts if p.get(key) is not None]
        if vals:
            out[key] = sum(v * n for v, n in vals) / max(1, sum(n for _, n in vals)) if key != "max" \
                else max(v for v, _ in vals)
    out["weight"] = weight
    return out


# ---------------------------------------------------------------- one measurement

def classify(r):
    """Which side limited a result (the rule in loadtest/README.md)."""
    marks = []
    if r["gen_busy"] >= BOUND:
        marks.append("client")
    if r.get("srv_cores") and r["srv_busy"] >= BOUND * r["srv_cores"]:
        marks.append("server")
    # Neither side used its cores fully, but the cores it runs on were full: other
    # processes (or the other side, unpinned) took the rest.
    shared = [r["machine_busy"], r.get("srv_cpus_busy") or 0, r.get("gen_cpus_busy") or 0]
    if not marks and max(shared) >= BOUND:
        marks.append("machine")
    return "+".join(marks) if marks else "-"


class Progress:
    """Prints a line every `every` seconds while a long measurement runs."""

    def __init__(self, label, servers, every=10.0):
        self.label, self.servers, self.every = label, servers, every
        self.stop = threading.Event()
        self.t0 = time.time()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            prev = [Scrape.of(s) for s in self.servers]
        except Exception:  # noqa: BLE001 - progress is best effort
            prev = None
        while not self.stop.wait(self.every):
            try:
                cur = [Scrape.of(s) for s in self.servers]
                d = ServerDelta(prev, cur) if prev else None
                prev = cur
                errs = sum(v for k, v in (d.statuses if d else {}).items() if not str(k).startswith("2"))
                rss = sum(s.rss_kib() for s in self.servers if s.alive())
                fds = sum(s.fds() for s in self.servers if s.alive())
                print(f"  [{self.label}] {time.time() - self.t0:5.0f}s  server: "
                      f"{(d.requests if d else 0) / self.every:,.0f} req/s, non-2xx {errs}, "
                      f"p99 {d.quantile_ms(0.99) if d else float('nan'):.3f} ms, RSS {rss:,} KiB, fds {fds}",
                      flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"  [{self.label}] progress unavailable: {e}", flush=True)

    def __enter__(self):
        if self.servers:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


def measure(load, url, servers, label, extra_pids=(), raw_dir=None, progress=None, on_tick=None,
            expect_status=None):
    """Runs `load` against `url` and returns the client's view, the servers' own view
    (/metrics deltas, CPU from /proc) and which side limited the result.

    servers: the service processes (scraped and CPU-accounted); extra_pids: other
    processes on the path (HAProxy) whose CPU is reported separately. on_tick(elapsed)
    is called about every 50 ms while the load runs (failover uses it to signal)."""
    before = [Scrape.of(s) for s in servers]
    srv_cpu0 = [s.cpu() for s in servers]
    extra0 = [cpu_seconds(p) or 0.0 for p in extra_pids]
    m0 = machine_cpu()
    tmp = tempfile.mkdtemp(prefix="loadtest-")
    outs, procs = [], []
    t0 = time.time()
    for i, cmd in enumerate(load.commands(url, tmp)):
        out = open(Path(tmp) / f"out{i}", "w+")
        outs.append(out)
        procs.append(subprocess.Popen(pinned(cmd, load.cpus), stdout=out, stderr=subprocess.STDOUT,
                                      env=dict(os.environ, **load.env)))
    long_run = progress if progress is not None else load.seconds >= 20
    gen_cpu = 0.0
    pending = {p.pid: p for p in procs}
    # Hard bound: the generator's own duration plus a margin, then it is killed.
    deadline = t0 + load.seconds + 60
    srv_cpu_last = list(srv_cpu0)
    with Progress(label, [s for s in servers if s.alive()] if long_run else []):
        while pending:
            for pid in list(pending):
                got, status, ru = os.wait4(pid, os.WNOHANG)
                if got == pid:
                    pending.pop(pid).returncode = os.waitstatus_to_exitcode(status)
                    gen_cpu += ru.ru_utime + ru.ru_stime
            for i, s in enumerate(servers):
                c = s.cpu()
                if c is not None:
                    srv_cpu_last[i] = c
            if on_tick:
                on_tick(time.time() - t0)
            if time.time() > deadline:
                for p in pending.values():
                    p.kill()
            time.sleep(0.05)
    wall = time.time() - t0
    m1 = machine_cpu()
    srv_cpu = sum((c1 or 0) - (c0 or 0) for c0, c1 in zip(srv_cpu0, srv_cpu_last))
    extra_cpu = sum((cpu_seconds(p) or e0) - e0 for p, e0 in zip(extra_pids, extra0))
    # A replica that was stopped or killed during the run has no "after": its
    # requests are left out of the server view (the client view still has them).
    pairs = []
    for b, s in zip(before, servers):
        if s.alive():
            try:
                pairs.append((b, Scrape.of(s)))
            except OSError:
                pass
    srv = ServerDelta([b for b, _ in pairs], [a for _, a in pairs])
    parts, texts = [], []
    for i, out in enumerate(outs):
        out.seek(0)
        text = out.read()
        out.close()
        texts.append(text)
        if load.client == "k6":
            if not (Path(tmp) / "k6.json").exists():
                raise Failure(f"k6 failed ({label}): {text[-600:]}")
            part = parse_k6(text, Path(tmp) / "k6.json")
            part["seconds"] = wall
            part["exit_code"] = procs[i].returncode
            part["output"] = text[-3000:]
            parts.append(part)
            continue
        if procs[i].returncode != 0 and load.client != "h2load":
            raise Failure(f"{load.client} failed ({label}): {text[-600:]}")
        parts.append(PARSERS[load.client](text))
    if raw_dir:
        Path(raw_dir).mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")
        for i, text in enumerate(texts):
            ext = "json" if load.client == "oha" else "txt"
            (Path(raw_dir) / f"{safe}{'-' + str(i) if len(texts) > 1 else ''}.{ext}").write_text(text)
    shutil.rmtree(tmp, ignore_errors=True)
    c = merge_client(parts)
    for key in ("checks_passed", "checks_failed", "thresholds", "exit_code", "output"):
        if key in parts[0]:
            c[key] = parts[0][key]
    # oha -w waits for in-flight requests; anything still reported as cut by the
    # deadline is not a server error.
    c["errors"] = {k: v for k, v in c["errors"].items() if "deadline" not in k}
    srv_cores = sum(min(s.workers, len(s.cpus) if s.cpus else CPUS) for s in servers)
    r = {
        "label": label, "client": load.describe(), "conns": load.conns, "streams": load.streams,
        "rate": load.rate, "wall_s": wall, "requests": c["requests"],
        "ok": sum(v for k, v in c["statuses"].items() if 200 <= k < 300),
        "statuses": c["statuses"], "errors": c["errors"],
        "rps": c["requests"] / max(1e-9, c["seconds"]),
        "p50": c.get("p50"), "p90": c.get("p90"), "p99": c.get("p99"), "p999": c.get("p999"),
        "mean": c.get("mean"), "max": c.get("max"),
        "srv_requests": srv.requests, "srv_statuses": srv.statuses,
        "srv_p50": srv.quantile_ms(0.5), "srv_p99": srv.quantile_ms(0.99), "srv_p999": srv.quantile_ms(0.999),
        "srv_cpu_s": srv_cpu, "srv_us_per_req": srv_cpu * 1e6 / srv.requests if srv.requests else float("nan"),
        "srv_busy": srv_cpu / wall, "srv_cores": srv_cores,
        "gen_cpu_s": gen_cpu, "gen_cores": load.cores(), "gen_busy": gen_cpu / (wall * load.cores()),
        "lb_cpu_s": extra_cpu if extra_pids else None,
        "machine_busy": busy_between(m0, m1),
        "gen_cpus_busy": busy_between(m0, m1, load.cpus) if load.cpus else None,
        "srv_cpus_busy": busy_between(m0, m1, servers[0].cpus) if servers and servers[0].cpus else None,
    }
    for key in ("checks_passed", "checks_failed", "thresholds", "exit_code", "output"):
        if key in c:
            r[key] = c[key]
    # What the server(s) ran with: the environment given and the service's own log line.
    r["server_env"] = servers[0].env if servers else {}
    r["server_settings"] = servers[0].settings if servers else {}
    # Cores used by processes that are not part of this run (other users of the machine).
    r["other_cores"] = max(0.0, r["machine_busy"] * CPUS - (srv_cpu + gen_cpu + (extra_cpu or 0)) / wall)
    r["limit"] = classify(r)
    if expect_status is not None:
        bad = {k: v for k, v in r["statuses"].items() if k != expect_status}
        if load.client == "wrk" and expect_status != 200:
            bad = {}  # wrk cannot tell codes apart; the server's counts are checked instead
        srv_bad = {k: v for k, v in r["srv_statuses"].items() if str(k) != str(expect_status)}
        if bad or r["errors"] or srv_bad:
            raise Failure(f"{label}: expected only {expect_status}; client {r['statuses']} "
                          f"errors {r['errors']}, server {r['srv_statuses']}")
    return r
