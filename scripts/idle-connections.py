#!/usr/bin/env python3
"""Memory per idle keep-alive connection.

Starts the binary on a loopback port (WORKERS=1), measures its resident memory, opens
N connections (default 10,000) that each send one POST /greet and read the answer,
then leaves them idle (they park after 1 s) and measures again; prints the growth
per connection and checks that a sample of the idle connections (one in ten, at
least 1,000) is still served, every one of them.

    scripts/idle-connections.py [--bin target/release/greeting-service] [-n 10000]
                                [--max-kib 8]   # exit 1 above this many KiB each (CI)
    scripts/idle-connections.py --bin perf/peers/bin/actix --port 18090   # a peer

--port serves servers that do not log a "listening" line (the peers in perf/peers):
the server gets that PORT and is used once it accepts connections. Needs harness/
(scripts/lib.sh need_harness; `scripts/py scripts/idle-connections.py` installs it).
"""
import argparse
import json
import resource
import socket
import sys
import time

from greeting_harness import Service, rss_kib

REQUEST = (b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 15\r\n\r\n{\"name\":\"John\"}")


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += sock.recv(4096)
    return head.split(b" ")[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/greeting-service")
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--port", type=int, help="give the server this PORT and wait for it to accept "
                    "(for servers without a \"listening\" log line)")
    ap.add_argument("--env", action="append", default=[], help="extra VAR=VALUE for the server")
    ap.add_argument("--max-kib", type=float, default=None,
                    help="fail (exit 1) when an idle connection costs more than this")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to wait after the last connection before measuring "
                         "(idle connections park after 1 s)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.n + 1000)), hard))

    env = {}
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    server = Service(args.bin, env, port=args.port or 0, listening_line=not args.port, keep=100, timeout=10)
    host, port = server.host, server.port
    try:
        # Warm up: a few requests so lazily built state exists before the baseline.
        for _ in range(20):
            s = socket.create_connection((host, port))
            s.sendall(REQUEST)
            read_response(s)
            s.close()
        time.sleep(0.5)
        before = rss_kib(server.pid)
        conns = []
        for i in range(args.n):
            s = socket.create_connection((host, port))
            s.sendall(REQUEST)
            if read_response(s) != b"200":
                raise SystemExit(f"connection {i}: not 200")
            conns.append(s)
        for t in range(int(args.settle * 4)):
            time.sleep(0.25)
            print(f"  t+{(t + 1) / 4:.2f}s RSS {rss_kib(server.pid)} KiB", file=sys.stderr)
        after = rss_kib(server.pid)
        served = 0
        sampled = conns[:: max(1, args.n // 1000)]
        for s in sampled:
            s.sendall(REQUEST)
            served += read_response(s) == b"200"
        per = (after - before) / args.n
        print(json.dumps({
            "connections": args.n,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "kib_per_idle_connection": round(per, 2),
            "sampled_requests_served": served,
            "sampled": len(sampled),
        }))
        if served != len(sampled):
            raise SystemExit(f"only {served} of {len(sampled)} sampled idle connections were served")
        if args.max_kib is not None and per > args.max_kib:
            raise SystemExit(f"{per:.2f} KiB per idle connection, above the limit of {args.max_kib}")
        for s in conns:
            s.close()
    finally:
        server.stop(timeout=20)


if __name__ == "__main__":
    main()
