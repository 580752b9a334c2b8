#!/usr/bin/env python3
"""Span export, checked by a real consumer of the protocol.

Starts a small OTLP/HTTP receiver that decodes what the service sends with the
official protobuf definitions (the opentelemetry-proto package), starts the
service against it, and checks:

  spans     one SERVER span per request, named "<method> <route>", with the HTTP
            semantic-convention attributes, the resource (service.name and
            OTEL_RESOURCE_ATTRIBUTES), the caller's trace id and parent span id,
            and the same span id the response's traceparent carries (and the
            same trace id the access log line carries); a new trace for a
            request without traceparent; none for a caller's unsampled trace;
  ratio     parent-based ratio sampling: 2,000 new traces at 0.25 give a share of
            sampled spans within 0.25 +- 0.04 (more than 4 standard deviations),
            and a caller's sampled flag is followed every time;
  flush     spans queued when SIGTERM arrives reach the receiver before exit;
  dead      an endpoint nobody listens on changes nothing for clients: every
            request answered 200, failures counted in otlp_spans_failed_total,
            one error log line (at most one per 30 s).

    tests/otlp/otlp_test.py --bin target/release/greeting-service

Needs opentelemetry-proto and harness/ (scripts/test installs both in .tools/venv).
"""
import argparse
import http.client
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from greeting_harness import Service, ServiceError, free_port
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
FAILURES = []


def check(cond, what):
    if cond:
        print(f"  ok: {what}")
    else:
        print(f"  FAIL: {what}")
        FAILURES.append(what)


class Receiver:
    """An OTLP/HTTP endpoint keeping every span it decodes."""

    def __init__(self):
        self.spans = []  # (resource attributes, span)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = (self.path == "/v1/traces"
                      and self.headers.get("Content-Type") == "application/x-protobuf")
                if ok:
                    req = ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    with outer.lock:
                        for rs in req.resource_spans:
                            res = {a.key: a.value.string_value for a in rs.resource.attributes}
                            for ss in rs.scope_spans:
                                for span in ss.spans:
                                    outer.spans.append((res, span))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.spans)

    def wait_for(self, n, timeout=15):
        deadline = time.time() + timeout
        while self.count() < n and time.time() < deadline:
            time.sleep(0.05)
        return self.count()

    def take(self):
        with self.lock:
            spans, self.spans = self.spans, []
        return spans


class Greeting(Service):
    """The service with access logs, in an environment of nothing but PATH and `env`
    (no OTEL_* setting of the caller's leaks in)."""

    def __init__(self, binary, env):
        try:
            super().__init__(binary, {"ACCESS_LOG": "true", **env}, inherit_env=False)
        except ServiceError as e:
            sys.exit(f"the service did not start: {e}")

    def request(self, method, path, headers=None, body=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        r.read()
        c.close()
        return r

    def metric(self, name):
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


def attrs(span):
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = v.string_value if v.HasField("string_value") else v.int_value
    return out


def exporting(binary, receiver, **env):
    """The service exporting to `receiver`, with more OTEL_* settings."""
    return Greeting(binary, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}", **env})


def greet(svc, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return svc.request("POST", "/greet", h, b'{"name":"Otel"}')


def spans_scenario(binary, receiver):
    print("== spans: attributes, ids, resource")
    svc = exporting(binary, receiver,
                    OTEL_SERVICE_NAME="greeting-ci",
                    OTEL_RESOURCE_ATTRIBUTES="deployment.environment=ci,team=a%2Cb")
    try:
        traced = greet(svc, {"traceparent": f"00-{TRACE}-{PARENT}-01", "X-Request-Id": "otel-1"})
        check(traced.status == 200, "traced request answered 200")
        tp = traced.getheader("traceparent")
        missing = svc.request("GET", "/nope", {"traceparent": f"00-{TRACE}-{PARENT}-01"})
        check(missing.status == 404, "unknown path answered 404")
        root = greet(svc)
        root_tp = root.getheader("traceparent") or ""
        unsampled_trace = "0af7651916cd43dd8448eb211c80319c"
        greet(svc, {"traceparent": f"00-{unsampled_trace}-b7ad6b7169203331-00"})
        got = receiver.wait_for(3)
        check(got == 3, f"three spans exported (got {got}; none for the unsampled trace)")
    finally:
        svc.stop()
    spans = receiver.take()
    by_trace = {}
    for res, span in spans:
        by_trace.setdefault(span.trace_id.hex(), []).append((res, span))
    check(unsampled_trace not in by_trace, "no span for the caller's unsampled trace")
    ours = by_trace.get(TRACE, [])
    named = {s.name: (res, s) for res, s in ours}
    greet_span = named.get("POST /greet")
    check(greet_span is not None, f"span 'POST /greet' in the caller's trace ({sorted(named)})")
    if greet_span:
        res, s = greet_span
        a = attrs(s)
        check(s.kind == Span.SPAN_KIND_SERVER, "kind SERVER")
        check(s.parent_span_id.hex() == PARENT, "parent is the caller's span")
        check(tp is not None and tp.split("-")[2] == s.span_id.hex(),
              f"response traceparent {tp} carries the span id {s.span_id.hex()}")
        check(tp is not None and tp.split("-")[1] == TRACE, "response traceparent keeps the trace id")
        for key, want in [("http.request.method", "POST"), ("http.route", "/greet"),
                          ("http.response.status_code", 200), ("url.path", "/greet"),
                          ("url.scheme", "http"), ("network.protocol.version", "1.1"),
                          ("client.address", "127.0.0.1")]:
            check(a.get(key) == want, f"{key} = {want!r} (got {a.get(key)!r})")
        check(isinstance(a.get("client.port"), int) and a["client.port"] > 0, "client.port")
        check(res.get("service.name") == "greeting-ci", "resource service.name from OTEL_SERVICE_NAME")
        check(res.get("deployment.environment") == "ci" and res.get("team") == "a,b",
              "resource attributes from OTEL_RESOURCE_ATTRIBUTES (percent-decoded)")
        check(s.end_time_unix_nano >= s.start_time_unix_nano > 0, "start and end times")
        log = [json.loads(l) for l in svc.lines if '"otel-1"' in l]
        check(bool(log) and log[0].get("trace_id") == TRACE, "access log line carries the trace id")
        check(bool(log) and log[0].get("span_id") == s.span_id.hex(),
              "access log line carries the exported span's id")
    nope = named.get("GET")
    check(nope is not None, "span 'GET' (no route) for the unknown path")
    if nope:
        a = attrs(nope[1])
        check("http.route" not in a and a.get("http.response.status_code") == 404,
              "unknown path: no http.route, status 404")
        check(nope[1].status.code == 0, "a 404 is not an error on a server span")
    roots = [s for tid, l in by_trace.items() if tid not in (TRACE, unsampled_trace) for _, s in l]
    check(len(roots) == 1 and not roots[0].parent_span_id, "a new trace for an untraced request")
    if roots:
        check(root_tp.split("-")[1:3] == [roots[0].trace_id.hex(), roots[0].span_id.hex()],
              "the response to an untraced request names its new trace")


def ratio_scenario(binary, receiver):
    print("== ratio: parent-based ratio sampling")
    svc = exporting(binary, receiver,
                    OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                    OTEL_TRACES_SAMPLER_ARG="0.25")
    try:
        n = 2000
        c = http.client.HTTPConnection(svc.host, svc.port, timeout=10)
        for _ in range(n):
            c.request("POST", "/greet", body=b'{"name":"R"}')
            c.getresponse().read()
        for i in range(100):
            tp = f"00-{i + 1:032x}-{PARENT}-01"
            c.request("POST", "/greet", body=b'{"name":"R"}', headers={"traceparent": tp})
            c.getresponse().read()
        c.close()
        time.sleep(2.5)
        receiver.wait_for(1)
    finally:
        svc.stop()
    spans = [s for _, s in receiver.take()]
    followed = sum(1 for s in spans if s.parent_span_id.hex() == PARENT)
    share = (len(spans) - followed) / n
    check(followed == 100, f"a caller's sampled flag is followed every time ({followed}/100)")
    check(abs(share - 0.25) <= 0.04, f"new traces sampled at {share:.3f} (0.25 +- 0.04)")


def flush_scenario(binary, receiver):
    print("== flush: queued spans reach the receiver before exit")
    svc = exporting(binary, receiver)
    for _ in range(50):
        greet(svc)
    svc.stop()
    check(svc.proc.returncode == 0, "exit 0")
    check(receiver.count() == 50, f"all 50 spans delivered by exit (got {receiver.count()})")
    receiver.take()


def dead_scenario(binary):
    print("== dead: an endpoint nobody listens on")
    svc = Greeting(binary, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    try:
        ok = 0
        started = time.time()
        c = http.client.HTTPConnection(svc.host, svc.port, timeout=10)
        for _ in range(2000):
            c.request("POST", "/greet", body=b'{"name":"D"}')
            ok += c.getresponse().read() == b'{"message":"Hello, D!"}'
        c.close()
        took = time.time() - started
        check(ok == 2000, f"every request answered ({ok}/2000, in {took:.1f} s)")
        time.sleep(3)
        failed = svc.metric("otlp_spans_failed_total")
        check(failed is not None and failed > 0, f"failures counted (otlp_spans_failed_total {failed})")
    finally:
        svc.stop()
    errors = [l for l in svc.lines if "OTLP export failed" in l]
    check(len(errors) == 1, f"one error line for the outage ({len(errors)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/greeting-service")
    args = ap.parse_args()
    receiver = Receiver()
    spans_scenario(args.bin, receiver)
    ratio_scenario(args.bin, receiver)
    flush_scenario(args.bin, receiver)
    dead_scenario(args.bin)
    if FAILURES:
        sys.exit(f"{len(FAILURES)} check(s) failed")
    print("all OTLP checks passed")


if __name__ == "__main__":
    main()
