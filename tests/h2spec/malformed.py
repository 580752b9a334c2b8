#!/usr/bin/env python3
"""Malformed HTTP/2 requests must end in PROTOCOL_ERROR (RFC 9113 section 8.1.1).

Drives raw frames over cleartext HTTP/2 with prior knowledge (h2c) against a running
server, one connection per case, and checks that every malformed stream ends with
RST_STREAM(PROTOCOL_ERROR) on that stream, or GOAWAY(PROTOCOL_ERROR) (a stream error
may be escalated to a connection error, RFC 9113 section 5.4.1), whatever the route
does with the request body.

    malformed.py 127.0.0.1:8080           # a server that is already running
    malformed.py --bin target/release/greeting-service
    malformed.py --bin ... -k trailers    # only cases whose id contains "trailers"

Needs the h2, hyperframe and hpack packages (scripts/lib.sh: need_pip h2==4.3.0
hyperframe==6.1.0 hpack==4.1.0) and harness/ (need_harness). Header blocks are
encoded here by hand (HPACK literals without indexing, RFC 7541 section 6.2.2) so
that a block can carry exactly the malformed fields a case needs (upper case names,
repeated or misplaced pseudo-headers), which h2's own state machine would refuse to
send; hpack decodes the server's blocks and hyperframe frames both ways.

Timing. The malformed part of a body case (DATA, trailers, a second HEADERS) is sent
in one of two ways, both deterministic:

  together        HEADERS and the rest in one write: the server has every frame of
                  the request before it can answer.
  separate        one write per frame, without waiting: h2spec's own timing, where
                  the answer may or may not come before the rest is read.
  after-response  HEADERS first; then a PING round trip (the server has processed
                  the HEADERS), then, on routes that answer without reading the body,
                  wait for the complete response (END_STREAM, or its last byte: the
                  service holds END_STREAM until the request body is over) or a
                  reset; only then the rest. This is what a slow client, or h2spec's separate writes,
                  meet when the server answers first.

After the last client frame the script waits for RST_STREAM/GOAWAY, for the
connection to close, or until the server has finished the stream and two PING round
trips sent after the last frame have completed (by then the server has processed
every frame sent and flushed what it queued for them), with --timeout as the bound.
No sleep is used as synchronisation.

Verdicts. PASS: RST_STREAM(PROTOCOL_ERROR) on the stream or GOAWAY(PROTOCOL_ERROR)
(FLOW_CONTROL_ERROR for the one flow-control case, h2spec 6.9.1/3; for the ok-*
control cases, well-formed requests with a body: a complete response and no error).
Otherwise FAIL, classified:

  violation       the server had the malformed frame while the stream was still open
                  (or half-closed (local)) on its side and did not refuse it: RFC 9113
                  section 8.1.1 is broken.
  rfc-permitted   the server had sent a complete response and RST_STREAM(NO_ERROR)
                  before the malformed frames were sent (RFC 9113 section 8.1 allows
                  that early answer); the stream was then closed on its side and
                  section 5.1 requires it to ignore later frames. The server is
                  RFC-conformant, but the service's requirement (and h2spec, which
                  sends its frames without waiting) wants the body validated anyway.
                  (For window-overflow: the server had sent END_STREAM, so it is no
                  longer a sender on that stream, which is whom RFC 9113 6.9.1 binds.)

Exit status 0 when every case passed, 1 otherwise (2 for usage or set-up errors). The
last line is "N passed, N failed".
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
from dataclasses import dataclass, field

try:
    import hpack
    import hyperframe.frame as hf
    from h2.errors import ErrorCodes
    from greeting_harness import Service, ServiceError
    from hpack.hpack import encode_integer
except ImportError as e:  # pragma: no cover - set-up error
    sys.exit(
        f"malformed.py: {e}; install with: . scripts/lib.sh && "
        "need_pip h2==4.3.0 hyperframe==6.1.0 hpack==4.1.0 && need_harness"
    )

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
STREAM = 1
PROTOCOL_ERROR = int(ErrorCodes.PROTOCOL_ERROR)
NO_ERROR = int(ErrorCodes.NO_ERROR)
FLOW_CONTROL_ERROR = int(ErrorCodes.FLOW_CONTROL_ERROR)


def code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


# ---------------------------------------------------------------------------
# Frames


def block(fields: list[tuple[str, str]]) -> bytes:
    """An HPACK block of literals without indexing, new name (RFC 7541 6.2.2), no
    Huffman: the fields go on the wire exactly as given."""
    out = bytearray()
    for name, value in fields:
        n, v = name.encode("latin-1"), value.encode("latin-1")
        out.append(0x00)
        out += encode_integer(len(n), 7)
        out += n
        out += encode_integer(len(v), 7)
        out += v
    return bytes(out)


def headers(fields, end_stream=False, stream=STREAM) -> hf.Frame:
    f = hf.HeadersFrame(stream, data=block(fields))
    f.flags.add("END_HEADERS")
    if end_stream:
        f.flags.add("END_STREAM")
    return f


def data(payload: bytes, end_stream=False, stream=STREAM) -> hf.Frame:
    f = hf.DataFrame(stream, data=payload)
    if end_stream:
        f.flags.add("END_STREAM")
    return f


def window_update(increment: int, stream=STREAM) -> hf.Frame:
    return hf.WindowUpdateFrame(stream, window_increment=increment)


# ---------------------------------------------------------------------------
# Connection


class Closed(Exception):
    pass


@dataclass
class Observed:
    """What the server did on the case's stream and connection, in order."""

    events: list[str] = field(default_factory=list)
    status: str | None = None
    response_ended: bool = False
    # The answer's declared length and the DATA bytes received of it: an answer is
    # complete at its last byte even when END_STREAM waits (the service holds it
    # until the request body is over).
    response_length: int | None = None
    response_bytes: int = 0
    rst: int | None = None
    goaway: int | None = None
    closed: bool = False

    def add(self, text: str) -> None:
        if not self.events or self.events[-1] != text:
            self.events.append(text)


class Conn:
    def __init__(self, host: str, port: int, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.decoder = hpack.Decoder()
        self.header_block: bytearray | None = None
        self.header_stream = 0
        self.header_end_stream = False
        self.obs = Observed()
        self.acks: set[bytes] = set()
        self.ping_seq = 0
        self.server_settings = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, *frames: hf.Frame | bytes) -> None:
        wire = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        try:
            self.sock.sendall(wire)
        except OSError as e:  # reset by the server: its GOAWAY may still be readable
            self.obs.add(f"send failed ({e.__class__.__name__})")

    def ping(self) -> bytes:
        self.ping_seq += 1
        opaque = self.ping_seq.to_bytes(8, "big")
        self.send(hf.PingFrame(0, opaque_data=opaque))
        return opaque

    def _read_more(self, deadline: float) -> bool:
        """Reads what is there; False on timeout. Raises Closed at EOF."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self.sock], [], [], left)
        if not ready:
            return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, OSError):
            chunk = b""
        if not chunk:
            self.obs.closed = True
            self.obs.add("connection closed")
            raise Closed()
        self.buf += chunk
        return True

    def next_frame(self, deadline: float) -> hf.Frame | None:
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[0:3], "big")
                if len(self.buf) >= 9 + length:
                    head = memoryview(bytes(self.buf[:9]))
                    frame, length = hf.Frame.parse_frame_header(head)
                    frame.parse_body(memoryview(bytes(self.buf[9 : 9 + length])))
                    del self.buf[: 9 + length]
                    self._handle(frame)
                    return frame
            if not self._read_more(deadline):
                return None

    def _handle(self, f: hf.Frame) -> None:
        obs = self.obs
        if isinstance(f, hf.SettingsFrame):
            if "ACK" not in f.flags:
                self.server_settings = True
                self.send(hf.SettingsFrame(0, flags=["ACK"]))
        elif isinstance(f, hf.PingFrame):
            if "ACK" in f.flags:
                self.acks.add(bytes(f.opaque_data))
            else:
                self.send(hf.PingFrame(0, flags=["ACK"], opaque_data=f.opaque_data))
        elif isinstance(f, hf.GoAwayFrame):
            obs.goaway = f.error_code
            obs.add(f"GOAWAY {code_name(f.error_code)}")
        elif isinstance(f, (hf.HeadersFrame, hf.ContinuationFrame)):
            if isinstance(f, hf.HeadersFrame):
                self.header_block = bytearray()
                self.header_stream = f.stream_id
                self.header_end_stream = "END_STREAM" in f.flags
            assert self.header_block is not None
            self.header_block += f.data
            if "END_HEADERS" in f.flags:
                fields = self.decoder.decode(bytes(self.header_block))
                self.header_block = None
                if self.header_stream == STREAM:
                    status = next((v for k, v in fields if k == ":status"), None)
                    if status is not None and obs.status is None:
                        obs.status = status
                        obs.add(f"response {status}")
                        length = next((v for k, v in fields if k == "content-length"), None)
                        obs.response_length = int(length) if length is not None else None
                    if self.header_end_stream:
                        obs.response_ended = True
                        obs.add("END_STREAM")
        elif isinstance(f, hf.DataFrame):
            if f.stream_id == STREAM:
                obs.response_bytes += len(f.data)
            if f.stream_id == STREAM and "END_STREAM" in f.flags:
                obs.response_ended = True
                obs.add("END_STREAM")
        elif isinstance(f, hf.RstStreamFrame):
            if f.stream_id == STREAM:
                obs.rst = f.error_code
                obs.add(f"RST_STREAM {code_name(f.error_code)}")

    def handshake(self, deadline: float) -> None:
        self.send(PREFACE, hf.SettingsFrame(0, settings={hf.SettingsFrame.ENABLE_PUSH: 0}))
        while not self.server_settings:
            if self.next_frame(deadline) is None:
                raise Closed("no SETTINGS from the server")

    def barrier(self, deadline: float, rounds: int = 2) -> bool:
        """PING round trips: after them the server has processed every frame sent
        before, and written what it queued for them. False on timeout or error."""
        for _ in range(rounds):
            opaque = self.ping()
            while opaque not in self.acks:
                if self.terminal():
                    return False
                if self.next_frame(deadline) is None:
                    return False
        return True

    def terminal(self) -> bool:
        o = self.obs
        return o.closed or o.goaway is not None or (o.rst is not None and o.rst != NO_ERROR)

    def stream_finished(self) -> bool:
        return self.obs.response_ended or self.obs.rst is not None

    def answered(self) -> bool:
        """The whole answer is in: END_STREAM, or every byte of its content-length."""
        obs = self.obs
        whole = obs.response_length is not None and obs.response_bytes >= obs.response_length
        return obs.response_ended or whole


# ---------------------------------------------------------------------------
# Cases


@dataclass(frozen=True)
class Target:
    method: str
    path: str
    note: str

    @property
    def reads_body(self) -> bool:
        """Whether the service reads the body before answering."""
        return self.method == "POST" and self.path == "/greet"

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


TARGETS = [
    Target("POST", "/greet", "reads the body"),
    Target("GET", "/healthz", "probe, answers from the head"),
    Target("POST", "/healthz", "405, answers from the head"),
    Target("POST", "/nope", "404, answers from the head"),
    Target("GET", "/greet", "405, answers from the head"),
]


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    rfc: str
    # builds (head frames, rest frames) from the request's pseudo-headers
    build: object
    body: bool  # True: the malformation is in the frames after the first HEADERS
    expect: int | None = PROTOCOL_ERROR  # None: a well-formed control request
    # When the server had sent its complete response (END_STREAM) before the rest was
    # sent, not raising the error is RFC-permitted for this case, for this reason.
    moot_after_response: str | None = None


def pseudo(t: Target, authority: str) -> list[tuple[str, str]]:
    return [(":method", t.method), (":scheme", "http"), (":path", t.path), (":authority", authority)]


def body_cases() -> list[Case]:
    def c(id, what, rfc, fn):
        return Case(id, what, rfc, fn, True)

    return [
        c("cl-larger", "content-length: 10, DATA 'test' END_STREAM", "8.1.1",
          lambda p: ([headers(p + [("content-length", "10")])], [data(b"test", True)])),
        c("cl-smaller", "content-length: 1, DATA 'test' END_STREAM (h2spec 8.1.2.6/1)", "8.1.1",
          lambda p: ([headers(p + [("content-length", "1")])], [data(b"test", True)])),
        c("cl-smaller-2nd-data", "content-length: 6, DATA 'test', DATA 'test' END_STREAM", "8.1.1",
          lambda p: ([headers(p + [("content-length", "6")])], [data(b"test"), data(b"test", True)])),
        c("cl-larger-trailers", "content-length: 10, DATA 'test', trailers END_STREAM", "8.1.1",
          lambda p: ([headers(p + [("content-length", "10")])],
                     [data(b"test"), headers([("x-trailer", "ok")], True)])),
        c("trailers-pseudo", "DATA 'test', trailers ':method: POST' with END_STREAM", "8.1.1, 8.3",
          lambda p: ([headers(p)], [data(b"test"), headers([(":method", "POST")], True)])),
        c("trailers-pseudo-no-es", "DATA 'test', trailers ':method: POST' without END_STREAM (h2spec 8.1.2.1/3)",
          "8.1, 8.3", lambda p: ([headers(p)], [data(b"test"), headers([(":method", "POST")])])),
        c("second-headers-no-es", "DATA 'test', second HEADERS 'x-test: ok' without END_STREAM (h2spec 8.1/1)",
          "8.1", lambda p: ([headers(p)], [data(b"test"), headers([("x-test", "ok")])])),
        c("second-headers-no-es-no-data", "second HEADERS 'x-test: ok' without END_STREAM, no DATA", "8.1",
          lambda p: ([headers(p)], [headers([("x-test", "ok")])])),
        # Not a malformed message: a flow-control error, but the same early-answer
        # timing decides it (h2spec 6.9.1/3).
        Case("window-overflow", "2 x WINDOW_UPDATE 2^31-1 on the stream (h2spec 6.9.1/3)", "6.9.1",
             lambda p: ([headers(p)], [window_update(2**31 - 1), window_update(2**31 - 1)]), True,
             FLOW_CONTROL_ERROR, "no longer a sender on the stream (6.9.1 binds senders)"),
    ]


BODY = b'{"name":"John"}'


def control_cases() -> list[Case]:
    """Well-formed requests with a body: they must be answered and must not end in an
    error (a fix that resets every stream early would fail these)."""

    def c(id, what, fn):
        return Case(id, what, "8.1", fn, True, None)

    n = str(len(BODY))
    return [
        c("ok-content-length", f"content-length: {n}, DATA of {n} bytes END_STREAM",
          lambda p: ([headers(p + [("content-length", n)])], [data(BODY, True)])),
        c("ok-two-data", "no content-length, two DATA frames, END_STREAM",
          lambda p: ([headers(p)], [data(BODY[:5]), data(BODY[5:], True)])),
        c("ok-trailers", f"content-length: {n}, DATA, trailers 'x-trailer: ok' END_STREAM",
          lambda p: ([headers(p + [("content-length", n)])], [data(BODY), headers([("x-trailer", "ok")], True)])),
    ]


def head_cases() -> list[Case]:
    """Malformed first HEADERS (sent with END_STREAM, as h2spec does)."""

    def c(id, what, rfc, fields_fn):
        return Case(id, what, rfc, lambda p: ([headers(fields_fn(p), True)], []), False)

    def without(p, name):
        return [(k, v) for k, v in p if k != name]

    def replace(p, name, value):
        return [(k, value if k == name else v) for k, v in p]

    return [
        c("uppercase-name", "field name 'X-TEST' (h2spec 8.1.2/1)", "8.2.2", lambda p: p + [("X-TEST", "ok")]),
        c("connection", "connection: keep-alive (h2spec 8.1.2.2/1)", "8.2.2", lambda p: p + [("connection", "keep-alive")]),
        c("transfer-encoding", "transfer-encoding: chunked", "8.2.2", lambda p: p + [("transfer-encoding", "chunked")]),
        c("keep-alive", "keep-alive: timeout=5", "8.2.2", lambda p: p + [("keep-alive", "timeout=5")]),
        c("proxy-connection", "proxy-connection: keep-alive", "8.2.2", lambda p: p + [("proxy-connection", "keep-alive")]),
        c("upgrade", "upgrade: h2c", "8.2.2", lambda p: p + [("upgrade", "h2c")]),
        c("te-not-trailers", "te: trailers, deflate (h2spec 8.1.2.2/2)", "8.2.2",
          lambda p: p + [("trailers", "test"), ("te", "trailers, deflate")]),
        c("unknown-pseudo", "':test: ok' (h2spec 8.1.2.1/1)", "8.3", lambda p: p + [(":test", "ok")]),
        c("response-pseudo", "':status: 200' in a request (h2spec 8.1.2.1/2)", "8.3", lambda p: p + [(":status", "200")]),
        c("pseudo-after-regular", "'x-test: ok' before the pseudo-headers (h2spec 8.1.2.1/4)", "8.3",
          lambda p: [("x-test", "ok")] + p),
        c("empty-path", "':path' empty (h2spec 8.1.2.3/1)", "8.3.1", lambda p: replace(p, ":path", "")),
        c("missing-method", "no ':method' (h2spec 8.1.2.3/2)", "8.3.1", lambda p: without(p, ":method")),
        c("missing-scheme", "no ':scheme' (h2spec 8.1.2.3/3)", "8.3.1", lambda p: without(p, ":scheme")),
        c("missing-path", "no ':path' (h2spec 8.1.2.3/4)", "8.3.1", lambda p: without(p, ":path")),
        c("missing-path-no-authority", "no ':path' and no ':authority'", "8.3.1",
          lambda p: without(without(p, ":path"), ":authority")),
        c("duplicate-method", "':method' twice (h2spec 8.1.2.3/5)", "8.3.1",
          lambda p: p + [(":method", p[0][1])]),
        c("duplicate-scheme", "':scheme' twice (h2spec 8.1.2.3/6)", "8.3.1", lambda p: p + [(":scheme", "http")]),
        c("duplicate-path", "':path' twice", "8.3.1", lambda p: p + [(":path", "/")]),
        c("cl-with-end-stream", "content-length: 4 on HEADERS with END_STREAM", "8.1.1",
          lambda p: p + [("content-length", "4")]),
        c("cl-not-a-number", "content-length: abc", "8.1.1", lambda p: p + [("content-length", "abc")]),
        c("cl-conflicting", "content-length: 0 and content-length: 1", "8.1.1",
          lambda p: p + [("content-length", "0"), ("content-length", "1")]),
        c("value-with-lf", "field value containing LF", "8.2.1", lambda p: p + [("x-test", "a\nb")]),
        c("value-with-cr", "field value containing CR", "8.2.1", lambda p: p + [("x-test", "a\rb")]),
        c("value-with-nul", "field value containing NUL", "8.2.1", lambda p: p + [("x-test", "a\x00b")]),
    ]


# ---------------------------------------------------------------------------
# Running


@dataclass
class Result:
    case: str
    target: str
    mode: str
    expected: str
    observed: str
    verdict: str

    @property
    def passed(self) -> bool:
        return self.verdict in ("PASS", "XPASS")


def expected(code: int | None) -> str:
    if code is None:
        return "a response, no error"
    return f"RST_STREAM or GOAWAY {code_name(code)}"


def run_case(host, port, case: Case, t: Target, mode: str, timeout: float, response_wait: float) -> Result:
    authority = f"{host}:{port}"
    head, rest = case.build(pseudo(t, authority))
    conn = Conn(host, port, timeout)
    obs = conn.obs
    reset_before_rest = False
    ended_before_rest = False
    try:
        deadline = time.monotonic() + timeout
        conn.handshake(deadline)
        if mode == "after-response" and rest:
            conn.send(*head)
            if conn.barrier(deadline) and not t.reads_body:
                wait_until = min(deadline, time.monotonic() + response_wait)
                while not (conn.answered() or conn.obs.rst is not None or conn.terminal()):
                    if conn.next_frame(wait_until) is None:
                        obs.add(f"no response within {response_wait}s")
                        break
                if conn.answered() and obs.rst is None and not conn.terminal():
                    # Let an implicit reset that follows the response show up first.
                    conn.barrier(deadline)
            reset_before_rest = obs.rst == NO_ERROR
            ended_before_rest = obs.response_ended
            if obs.events and not conn.terminal():
                obs.add("-- rest sent -->")
            if not conn.terminal():
                conn.send(*rest)
        elif mode == "separate":
            for frame in (*head, *rest):
                conn.send(frame)
        else:
            conn.send(*head, *rest)
        # Observe until a verdict is certain.
        deadline = time.monotonic() + timeout
        if not conn.terminal():
            conn.barrier(deadline)
        while not conn.terminal() and not conn.stream_finished():
            if conn.next_frame(deadline) is None:
                obs.add(f"nothing more within {timeout}s")
                break
        if conn.stream_finished() and not conn.terminal():
            # A reset caused by our last frames would have been written by now.
            conn.barrier(deadline)
    except Closed:
        pass
    except OSError as e:
        obs.add(f"socket error: {e}")
    finally:
        conn.close()

    if case.expect is None:
        clean = obs.rst in (None, NO_ERROR) and obs.goaway in (None, NO_ERROR) and not obs.closed
        verdict = "PASS" if obs.status is not None and obs.response_ended and clean else "FAIL violation"
    elif obs.rst == case.expect or obs.goaway == case.expect:
        verdict = "PASS"
    elif reset_before_rest and obs.rst == NO_ERROR and obs.goaway is None:
        verdict = "FAIL rfc-permitted"
    elif ended_before_rest and case.moot_after_response and obs.goaway is None:
        verdict = "FAIL rfc-permitted"
        obs.add(f"[{case.moot_after_response}]")
    else:
        verdict = "FAIL violation"
    observed = ", ".join(obs.events) or "nothing"
    return Result(case.id, t.label, mode if case.body else "head", expected(case.expect), observed, verdict)


def print_table(results: list[Result]) -> None:
    cols = ["case", "path", "mode", "expected", "observed", "verdict"]
    rows = [[r.case, r.target, r.mode, r.expected, r.observed, r.verdict] for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("server", nargs="?", help="HOST:PORT of a running server")
    ap.add_argument("--bin", help="start this binary (PORT=0 HOST=127.0.0.1 WORKERS=1) and test it")
    ap.add_argument("--timeout", type=float, default=3.0, help="bound on each wait, seconds (3)")
    ap.add_argument("--response-wait", type=float, default=1.0,
                    help="after-response mode: how long to wait for an early response (1)")
    ap.add_argument("--modes", default="together,separate,after-response",
                    help="timings for body cases, comma-separated (together,separate,after-response)")
    ap.add_argument("-k", dest="filter", action="append", default=[],
                    help="only cases whose 'case path mode' contains this (repeatable: any)")
    ap.add_argument("--json", action="store_true", help="print results as JSON lines instead of a table")
    ap.add_argument("--list", action="store_true", help="list the cases and targets, then exit")
    ap.add_argument("--xfail", action="append", default=[], metavar="CASE[@MODE]",
                    help="a known failure (an upstream bug): reported as XFAIL, not counted as failed "
                         "(repeatable; MODE is together, separate, after-response or head)")
    args = ap.parse_args()
    if args.list:
        for case in body_cases() + control_cases() + head_cases():
            print(f"{case.id:30} RFC 9113 {case.rfc:10} {case.what}")
        for t in TARGETS:
            print(f"target {t.label:15} {t.note}")
        return 0
    if bool(args.server) == bool(args.bin):
        ap.error("give HOST:PORT or --bin PATH")
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in ("together", "separate", "after-response"):
            ap.error(f"unknown mode {m!r}")

    server = None
    if args.bin:
        try:
            server = Service(args.bin, timeout=10)
        except ServiceError as e:
            sys.exit(f"malformed.py: {e}")
        host, port = server.host, server.port
    else:
        host, _, port_s = args.server.rpartition(":")
        host, port = host.strip("[]"), int(port_s)

    plan = []
    for t in TARGETS:
        for case in body_cases() + control_cases():
            for mode in modes:
                plan.append((case, t, mode))
        for case in head_cases():
            plan.append((case, t, "head"))
    if args.filter:
        plan = [(c, t, m) for c, t, m in plan if any(f in f"{c.id} {t.label} {m}" for f in args.filter)]

    results = []
    try:
        for case, t, mode in plan:
            r = run_case(host, port, case, t, mode, args.timeout, args.response_wait)
            results.append(r)
            if args.json:
                print(json.dumps(r.__dict__), flush=True)
    finally:
        if server is not None:
            server.stop(timeout=15)

    xfail = set(args.xfail)
    for r in results:
        if {r.case, f"{r.case}@{r.mode}"} & xfail:
            r.verdict = "XPASS" if r.passed else f"XFAIL ({r.verdict.removeprefix('FAIL ')})"
    if not args.json:
        print_table(results)
    passed = sum(r.verdict in ("PASS", "XPASS") for r in results)
    xfailed = sum(r.verdict.startswith("XFAIL") for r in results)
    failed = len(results) - passed - xfailed
    permitted = sum(r.verdict == "FAIL rfc-permitted" for r in results)
    if failed:
        print(f"\nfailed: {failed - permitted} violations, {permitted} rfc-permitted early answers "
              "(see the module docstring)")
    if xfailed or any(r.verdict == "XPASS" for r in results):
        xpassed = sum(r.verdict == "XPASS" for r in results)
        print(f"known failures (--xfail): {xfailed} still failing, {xpassed} now passing")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
