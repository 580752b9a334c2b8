"""Replicas behind the shipped HAProxy config, on loopback.

The replicas listen on distinct loopback addresses (127.0.0.2, 127.0.0.3, ...) on one
port, as containers of one compose service would; a dnsmasq started here answers the
service name with one A record per replica; HAProxy runs `deploy/haproxy/haproxy.cfg`
unchanged, pointed at all of this through the environment variables the file expands
itself (GS_BIND, GS_STATS_BIND, GS_SERVICE, GS_PORT, GS_RESOLVER).
"""
import csv
import hashlib
import io
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from common import ROOT, Failure, Server, http_get, pinned
from greeting_harness import cpu_seconds, free_port

SHIPPED = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
VARS = ("GS_BIND", "GS_STATS_BIND", "GS_SERVICE", "GS_PORT", "GS_RESOLVER")


def haproxy_config(path):
    """(path to run, note for the summary). The shipped file is used as it is when it
    expands the GS_* variables; an older file without them gets a copy outside the
    repository with exactly those variables added, and the summary says so."""
    path = Path(path)
    text = path.read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    if all(v in text for v in ("GS_BIND", "GS_RESOLVER", "GS_PORT")):
        return path, f"`{rel}` unchanged (sha256 {digest}…)"
    patched = text
    patched = re.sub(r"^(\s*)bind :8080\s*$", r'\1bind "${GS_BIND-:8080}"', patched, flags=re.M)
    patched = re.sub(r"^(\s*)parse-resolv-conf\s*$",
                     r'.if defined(GS_RESOLVER)\n\1nameserver gs "${GS_RESOLVER}"\n.else\n\1parse-resolv-conf\n.endif',
                     patched, flags=re.M)
    patched = re.sub(r"^(\s*server-template \S+) (\S+) app:8080(.*)$",
                     r'\1 "${GS_SLOTS-\2}" "${GS_SERVICE-app}:${GS_PORT-8080}"\3', patched, flags=re.M)
    if "GS_STATS_BIND" not in patched:
        patched += ('\nfrontend stats\n    bind "${GS_STATS_BIND-:8405}"\n'
                    '    http-request use-service prometheus-exporter if { path /metrics }\n'
                    '    stats enable\n    stats uri /stats\n')
    if patched.count("${GS_") < 4:
        raise Failure(f"{rel} has no GS_* variables and could not be adapted; pass --haproxy-cfg")
    out = Path(tempfile.mkdtemp(prefix="loadtest-haproxy-")) / "haproxy.cfg"
    out.write_text(patched)
    print(f"WARNING: {rel} does not expand GS_BIND/GS_RESOLVER/GS_PORT yet; running a copy with "
          f"only those variables added: {out}", flush=True)
    return out, (f"**a copy of `{rel}` (sha256 {digest}…) with the GS_* variables added** (the shipped "
                 f"file did not expand them yet); otherwise unchanged")


def port_free(host, port):
    try:
        with socket.socket() as s:
            s.bind((host, port))
        return True
    except OSError:
        return False


class Dns:
    """dnsmasq answering NAME with one A record per replica, on 127.0.0.1:<port>/udp."""

    def __init__(self, name, addrs):
        self.port = free_port()
        cmd = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", f"--port={self.port}",
               "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
               "--pid-file=", "--user=root", "--local-ttl=1", "--log-facility=-"]
        cmd += [f"--host-record={name},{a}" for a in addrs]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="loadtest-dnsmasq-", delete=False)
        for attempt in range(5):
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
            time.sleep(0.2)
            if self.proc.poll() is None:
                return
            # The port was taken between the check and dnsmasq's bind: another one.
            self.port = free_port()
            cmd = [c if not c.startswith("--port=") else f"--port={self.port}" for c in cmd]
        self.log.seek(0)
        raise Failure(f"dnsmasq did not start: {self.log.read()[-500:]}")

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        os.unlink(self.log.name)


class Cluster:
    """N replicas (WORKERS each), dnsmasq and HAProxy with the shipped config."""

    def __init__(self, binary, n, cfg, workers=1, env=None, server_cpus=None, lb_cpus=None, service="app"):
        self.replicas, self.dns, self.lb = [], None, None
        try:
            self.port = free_port("127.0.0.2")
            while any(not port_free(f"127.0.0.{i + 2}", self.port) for i in range(n)):
                self.port = free_port("127.0.0.2")
            for i in range(n):
                self.replicas.append(Server(binary, env=env, cpus=server_cpus, host=f"127.0.0.{i + 2}",
                                            port=self.port, workers=workers))
            self.dns = Dns(service, [r.host for r in self.replicas])
            self.lb_log = tempfile.NamedTemporaryFile("w+", prefix="loadtest-haproxy-", delete=False)
            for attempt in range(5):
                self.lb_port, self.stats_port = free_port(), free_port()
                lb_env = dict(os.environ, GS_BIND=f"127.0.0.1:{self.lb_port}",
                              GS_STATS_BIND=f"127.0.0.1:{self.stats_port}", GS_SERVICE=service,
                              GS_PORT=str(self.port), GS_RESOLVER=self.dns.addr)
                self.lb = subprocess.Popen(pinned(["haproxy", "-db", "-f", str(cfg)], lb_cpus), env=lb_env,
                                           stdout=self.lb_log, stderr=subprocess.STDOUT)
                time.sleep(0.3)
                if self.lb.poll() is None or "cannot bind" not in Path(self.lb_log.name).read_text():
                    break
                # A port was taken between the check and HAProxy's bind: other ports.
                self.lb_log.truncate(0)
            self.wait_ready(n)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self):
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def lb_pid(self):
        return self.lb.pid

    def lb_cpu(self):
        return cpu_seconds(self.lb.pid)

    def _csv(self):
        for path in ("/stats;csv", "/;csv", "/haproxy?stats;csv"):
            try:
                status, text = http_get("127.0.0.1", self.stats_port, path, timeout=2)
            except OSError:
                return []
            if status == 200 and text.startswith("# pxname"):
                return list(csv.DictReader(io.StringIO(text[2:])))
        return []

    def names(self):
        """HAProxy server slot -> replica address, from HAProxy's log of DNS updates."""
        self.lb_log.flush()
        text = Path(self.lb_log.name).read_text(errors="replace")
        out = {}
        for m in re.finditer(r"(\S+)/(\S+) changed its IP from \S+ to (\S+)", text):
            out[m.group(2)] = m.group(3).rstrip(".,")
        return out

    def stats(self):
        """HAProxy's per-server rows keyed by replica address (or slot name when the
        address is unknown), from the stats CSV the config serves on GS_STATS_BIND;
        {} when there is none."""
        names = self.names()
        return {names.get(r["svname"], r["svname"]): r for r in self._csv()
                if r["svname"] not in ("FRONTEND", "BACKEND") and r["pxname"] not in ("internal", "stats")
                and r.get("status", "").split(" ")[0] != "MAINT"}

    def backend_stats(self):
        for r in self._csv():
            if r["svname"] == "BACKEND":
                return r
        return {}

    def up(self):
        """Replica addresses HAProxy has UP, or None when it serves no stats."""
        st = self.stats()
        if not st and not self._csv():
            return None
        return sorted(k for k, r in st.items() if r.get("status", "").startswith("UP"))

    def wait_ready(self, n, timeout=30):
        deadline = time.time() + timeout
        want = sorted(r.host for r in self.replicas)
        while time.time() < deadline:
            if self.lb.poll() is not None:
                self.lb_log.seek(0)
                raise Failure(f"haproxy exited: {self.lb_log.read()[-1500:]}")
            up = self.up()
            if up is not None and all(h in up for h in want):
                return
            if up is None and self._routes_to_all():
                return
            time.sleep(0.25)
        self.lb_log.seek(0)
        raise Failure(f"HAProxy did not bring {n} replicas up within {timeout}s "
                      f"(up: {self.up()}); log: {self.lb_log.read()[-1500:]}")

    def _routes_to_all(self):
        """Without a stats page: every replica answered a request sent through HAProxy."""
        from common import Scrape
        try:
            before = [Scrape.of(r).requests.get(("/healthz", "200"), 0) for r in self.replicas]
            for _ in range(4 * len(self.replicas)):
                http_get("127.0.0.1", self.lb_port, "/healthz", timeout=2)
            after = [Scrape.of(r).requests.get(("/healthz", "200"), 0) for r in self.replicas]
        except OSError:
            return False
        return all(a > b for a, b in zip(after, before))

    def stop(self):
        if self.lb is not None and self.lb.poll() is None:
            self.lb.send_signal(signal.SIGUSR1)  # soft stop
            try:
                self.lb.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.lb.kill()
                self.lb.wait()
        if self.lb is not None:
            os.unlink(self.lb_log.name)
        for r in self.replicas:
            r.stop(timeout=30)
        if self.dns:
            self.dns.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
