#!/usr/bin/env python3
"""The Jaeger stand-in of scripts/compose-test: accepts OTLP/HTTP span exports and
says what it received.

    otlp-sink.py [ignored arguments]   # Jaeger's command line is passed and ignored

Port 4318: `POST /v1/traces` with `Content-Type: application/x-protobuf` is answered
200 with an empty ExportTraceServiceResponse and counted. Port 16686 (Jaeger's UI
port): `GET /stats` answers JSON: batches, bytes, and whether the bodies named the
service (`greeting-service` appears as is in the protobuf). The decoding itself is
proven by the otlp stage (tests/otlp); this checks the compose wiring. Standard
library only: the stand-in image is Debian with python3.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {"batches": 0, "bytes": 0, "names_service": 0, "refused": 0}
LOCK = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
        with LOCK:
            if ok:
                STATS["batches"] += 1
                STATS["bytes"] += len(body)
                STATS["names_service"] += b"greeting-service" in body
            else:
                STATS["refused"] += 1
        self.send_response(200 if ok else 415)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Stats(BaseHTTPRequestHandler):
    def do_GET(self):
        with LOCK:
            body = json.dumps(STATS).encode()
        self.send_response(200 if self.path == "/stats" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    stats = ThreadingHTTPServer(("0.0.0.0", 16686), Stats)
    threading.Thread(target=stats.serve_forever, daemon=True).start()
    print("otlp-sink: OTLP/HTTP on :4318, stats on :16686/stats", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 4318), Receiver).serve_forever()
