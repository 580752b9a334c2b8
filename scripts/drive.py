#!/usr/bin/env python3
"""Sends N `POST /greet` requests over one keep-alive connection, one at a time.

Used by scripts/perf-gate: one connection and strictly sequential requests make the
server do the same work for every request, so its instruction count repeats.

    scripts/drive.py HOST:PORT N
"""
import socket
import sys

REQUEST = (b"POST /greet HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           b"Content-Length: 15\r\n\r\n{\"name\":\"John\"}")
EXPECTED = b'{"message":"Hello, John!"}'


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    n = int(sys.argv[2])
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for i in range(n):
        sock.sendall(REQUEST)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].lower()
                length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(buf) >= end + 4 + length:
                    body = buf[end + 4:end + 4 + length]
                    buf = buf[end + 4 + length:]
                    break
            chunk = sock.recv(65536)
            if not chunk:
                sys.exit(f"connection closed after {i} responses")
            buf += chunk
        if not head.startswith(b"http/1.1 200") or body != EXPECTED:
            sys.exit(f"unexpected response {i}: {head[:40]!r} {body!r}")
    sock.close()
    print(n)


if __name__ == "__main__":
    main()
