#!/usr/bin/env python3
"""Per-response unique header values go out as HPACK never-indexed literals.

`X-Request-Id` and our `traceparent` differ on every response. Indexed into the
connection's HPACK dynamic table (RFC 7541 section 2.3.2) they would evict useful
entries and make the server's encoder compare every later value against a growing
chain of dead ones, which once cost about 10 % of the server's instructions per
HTTP/2 stream. The service marks them so the encoder sends "literal never indexed"
(section 6.2.3), which the decoder here reports as NeverIndexedHeaderTuple; the
fixed headers (content-type, cache-control, ...) stay indexable.

    never_indexed.py --bin target/release/greeting-service

Needs h2==4.3.0 (scripts/lib.sh need_pip) and harness/ (need_harness). Exit status
0 when every check passed.
"""

import argparse
import socket
import sys

import h2.config
import h2.connection
import h2.events
from greeting_harness import Service
from hpack import NeverIndexedHeaderTuple

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def responses(port, requests):
    """Sends `requests` (header lists) as streams on one h2c connection; returns each
    response's header list as decoded (tuple types kept)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.initiate_connection()
    body = b'{"name":"John"}'
    streams = []
    for extra in requests:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
                                (":path", "/greet"), ("content-type", "application/json"),
                                ("content-length", str(len(body))), *extra])
        conn.send_data(sid, body, end_stream=True)
        streams.append(sid)
    sock.sendall(conn.data_to_send())
    got, ended = {}, set()
    while len(ended) < len(streams):
        data = sock.recv(65536)
        if not data:
            raise SystemExit("connection closed early")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                got[event.stream_id] = event.headers
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sock.sendall(conn.data_to_send())
    sock.close()
    return [got[s] for s in streams]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    a = ap.parse_args()
    server = Service(a.bin)
    port = server.port
    failed = 0

    def check(ok, what):
        nonlocal failed
        print(("  ok: " if ok else "FAIL: ") + what)
        failed += not ok

    try:
        traced = [("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01")]
        got = responses(port, [[], [("x-request-id", "caller-1")], traced, traced])
        for i, headers in enumerate(got):
            kinds = {name: type(h) for h in headers for name in [h[0]]}
            check(kinds.get("x-request-id") is NeverIndexedHeaderTuple,
                  f"response {i + 1}: x-request-id never indexed ({kinds.get('x-request-id')})")
            check(kinds.get("content-type") is not NeverIndexedHeaderTuple,
                  f"response {i + 1}: content-type indexable")
            if i >= 2:
                check(kinds.get("traceparent") is NeverIndexedHeaderTuple,
                      f"response {i + 1}: traceparent never indexed ({kinds.get('traceparent')})")
        check(dict(got[1]).get("x-request-id") == "caller-1", "the caller's id comes back intact")
    finally:
        server.stop(timeout=15)
    print("all checks passed" if not failed else f"{failed} checks failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
