#!/usr/bin/env python3
"""What schemathesis cannot send, checked against the same description, openapi.yaml
(its x-conformance): every method on every path, request media types, 408, 413, 431,
503 and traceparent on every route.

    tests/openapi/conformance.py ADDR PID HEADER_TIMEOUT

ADDR is a running server's HOST:PORT, PID its process (sent SIGTERM by the last
checks, which need SHUTDOWN_DELAY to keep it serving), HEADER_TIMEOUT its setting in
seconds (the 408 check). scripts/test openapi starts the server and runs this. Needs
PyYAML, jsonschema and referencing (scripts/test installs them in .tools/venv).
"""
import json, os, signal, socket, sys, time
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

addr, pid, header_timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
host, port = addr.rsplit(":", 1)
spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())
registry = Registry().with_resource("urn:openapi", Resource(spec, DRAFT202012))
TRACE_ID, SPAN_ID, FLAGS = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01"
failures, count = [], 0


def esc(key):
    return key.replace("~", "~0").replace("/", "~1")


def node_at(pointer):
    """The object at a "#/..." pointer in openapi.yaml, after $ref, and its pointer."""
    node = spec
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node_at(node["$ref"]) if isinstance(node, dict) and "$ref" in node else (node, pointer)


def errors(value, pointer):
    validator = Draft202012Validator({"$ref": "urn:openapi" + pointer}, registry=registry)
    return [e.message[:200] for e in validator.iter_errors(value)]


def request(method, path, headers=(), body=b"", traced=True):
    head = [f"{method} {path} HTTP/1.1", f"Host: {addr}", "Connection: close"]
    if traced:
        head += [f"traceparent: 00-{TRACE_ID}-{SPAN_ID}-{FLAGS}", "X-Request-Id: conformance-1"]
    head += list(headers)
    if body and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def send(raw, attempts=2):
    """Sends one request on its own connection; returns status, headers, body."""
    out = b""
    with socket.create_connection((host, int(port)), timeout=header_timeout + 10) as s:
        try:
            s.sendall(raw)
        except OSError:
            pass  # answered and closed before the rest was read (413, 431)
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass  # the same: a reset may also discard the answer, hence one retry
    if not out and attempts > 1:
        return send(raw, attempts - 1)
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


def described(method, path, status):
    """Where openapi.yaml describes this answer: an operation or x-other-methods."""
    item_path = path if path in spec["paths"] else "/{unknownPath}"
    item = spec["paths"][item_path]
    if method.lower() in item:
        pointer = f"#/paths/{esc(item_path)}/{method.lower()}/responses/{status}"
    elif item["x-other-methods"]["status"] == status:
        pointer = f"#/paths/{esc(item_path)}/x-other-methods/response"
    else:
        return None, None
    try:
        return node_at(pointer)
    except KeyError:
        return None, None


def check(label, method, path, raw, expect, traced=True):
    global count
    count += 1
    status, headers, body = send(raw)
    problems = [] if status == expect else [f"status {status}, expected {expect}"]
    response, pointer = described(method, path, status)
    if response is None:
        problems.append(f"openapi.yaml describes no {status} here")
    else:
        for name in response.get("headers", {}):
            header, hpointer = node_at(f"{pointer}/headers/{esc(name)}")
            value = headers.get(name.lower())
            if value is None and header.get("required"):
                problems.append(f"no {name} header")
            elif value is not None:
                problems += [f"{name}: {value[0]!r}: {e}" for e in errors(value[0], hpointer + "/schema")]
        content = response.get("content")
        if method == "HEAD" or not content:
            if body:
                problems.append(f"a body where none is described: {body[:60]!r}")
        else:
            ctype = (headers.get("content-type") or [""])[0]
            key = next((k for k in content if k.replace(" ", "") == ctype.replace(" ", "")), None)
            if key is None:
                problems.append(f"Content-Type {ctype!r}, described: {', '.join(content)}")
            else:
                value = json.loads(body) if "json" in key else body.decode()
                problems += [f"body: {e}" for e in errors(value, f"{pointer}/content/{esc(key)}/schema")]
    if traced and status != 431:  # hyper's 431 is sent before the service sees the request
        if headers.get("x-request-id") != ["conformance-1"]:
            problems.append(f"X-Request-Id not echoed: {headers.get('x-request-id')}")
        child = (headers.get("traceparent") or [""])[0].split("-")
        if len(child) != 4 or child[1] != TRACE_ID or child[2] == SPAN_ID or child[3] != FLAGS:
            problems.append(f"traceparent not continued: {headers.get('traceparent')}")
    if problems:
        failures.append(f"{label}: {method} {path}: " + "; ".join(problems))


GREET = b'{"name":"John"}'
JSON = ["Content-Type: application/json"]
for path in ["/greet", "/healthz", "/readyz", "/metrics"]:
    for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "FROB"]:
        expect = 200 if method.lower() in spec["paths"][path] else 405
        check("every method", method, path, request(method, path, JSON, GREET), expect)
for path in ["/", "/nope", "/greet.json", "/greet/", "/a/b", "//healthz", "/HEALTHZ", "/%67reet"]:
    for method in ["GET", "HEAD", "POST", "DELETE", "CONNECT", "FROB"]:
        check("unknown path", method, path, request(method, path), 404)
for ctype, expect in [
    (None, 200), ("application/json", 200), ("application/json; charset=utf-8", 200),
    ("Application/JSON;foo=bar", 200), ("application/merge-patch+json", 200),
    ("application/vnd.api+json; charset=utf-8", 200), ("application/problem+json", 200),
    ("", 415), ("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("text/json", 415),
    ("application/jsonx", 415), ("application/+json", 415), ("multipart/form-data; boundary=x", 415),
]:
    headers = [] if ctype is None else [f"Content-Type: {ctype}"]
    check(f"Content-Type {ctype!r}", "POST", "/greet", request("POST", "/greet", headers, GREET), expect)
for body, expect in [
    ('{"name":"  John \\n"}', 200), ('{"name":"\\u0085\\u3000Zo\\u00eb\\u00a0"}', 200),
    (json.dumps({"name": " " * 100 + "é" * 256 + "\t"}), 200), (json.dumps({"name": "é" * 257}), 400),
    ('{"name":"\\u00a0\\u2028"}', 400), ('{"name":"a\\u0085b"}', 400), ('{"name":"John"', 400),
    ('{"name":"x","n":1e400}', 400), ('{"name":"x","n":' + "[" * 1023 + "]" * 1023 + "}", 200),
    ('{"name":"x","n":' + "[" * 1024 + "]" * 1024 + "}", 400),  # 1025 levels with the object
    ("", 400), ("[]", 400), ('{"name":7}', 400), ('{"name":"x"} x', 400), ("\ufeff{}", 400),
]:
    raw = request("POST", "/greet", JSON, body.encode())
    check(f"body {body[:24]!r}", "POST", "/greet", raw, expect)
check("invalid UTF-8", "POST", "/greet", request("POST", "/greet", JSON, b'{"name":"\xff"}'), 400)
check("413 declared", "POST", "/greet", request("POST", "/greet", ["Content-Length: 16385"]), 413)
chunks = b"4000\r\n" + b" " * 0x4000 + b"\r\n1\r\n \r\n0\r\n\r\n"
check("413 streamed", "POST", "/greet", request("POST", "/greet", ["Transfer-Encoding: chunked"], chunks), 413)
started = time.monotonic()
check("408", "POST", "/greet", request("POST", "/greet", ["Content-Length: 15"], b'{"name"'), 408)
if not header_timeout - 0.5 < time.monotonic() - started < header_timeout + 2:
    failures.append(f"408 after {time.monotonic() - started:.1f} s, HEADER_TIMEOUT is {header_timeout} s")
check("431 size", "GET", "/healthz", request("GET", "/healthz", ["X-Big: " + "a" * 65536]), 431)
many = [f"X-H{i}: v" for i in range(97)]  # 101 fields with the four request() adds
check("431 fields", "GET", "/healthz", request("GET", "/healthz", many), 431)
os.kill(pid, signal.SIGTERM)  # /readyz turns 503 at once; SHUTDOWN_DELAY keeps serving
time.sleep(0.5)
for method, path, expect in [("GET", "/readyz", 503), ("HEAD", "/readyz", 503), ("GET", "/healthz", 200)]:
    check("after SIGTERM", method, path, request(method, path), expect)

print(f"{count} requests schemathesis does not make, checked against openapi.yaml: {len(failures)} failed")
for failure in failures:
    print("  " + failure)
sys.exit(1 if failures else 0)
