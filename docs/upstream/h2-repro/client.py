"""Sends one raw HTTP/2 request (prior knowledge, cleartext) and prints every frame
the server sends back. Needs hyperframe and hpack (pip install hyperframe hpack).

    python client.py HOST:PORT trailers-pseudo     # trailers carry ':method'
    python client.py HOST:PORT cl-at-trailers      # content-length 10, 4 bytes, trailers
    python client.py HOST:PORT no-path             # no ':path' and no ':authority'
"""
import socket, sys, time
import hpack
import hyperframe.frame as hf

addr, case = sys.argv[1], sys.argv[2]
host, port = addr.rsplit(":", 1)
enc = hpack.Encoder()


def headers(fields, end_stream):
    f = hf.HeadersFrame(1, data=enc.encode(fields), flags=["END_HEADERS"])
    if end_stream:
        f.flags.add("END_STREAM")
    return f


def data(payload, end_stream):
    return hf.DataFrame(1, data=payload, flags=["END_STREAM"] if end_stream else [])


req = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", addr)]
first, rest = {  # lambdas: the HPACK encoder's state must follow what is sent
    "trailers-pseudo": lambda: ([headers(req, False)],
                                [data(b"test", False), headers([(":method", "POST")], True)]),
    "cl-at-trailers": lambda: ([headers(req + [("content-length", "10")], False)],
                               [data(b"test", False), headers([("x-trailer", "ok")], True)]),
    "no-path": lambda: ([headers([(":method", "GET"), (":scheme", "http")], True)], []),
}[case]()

sock = socket.create_connection((host, int(port)))
sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + hf.SettingsFrame(0).serialize()
             + hf.SettingsFrame(0, flags=["ACK"]).serialize())
buf, dec = b"", hpack.Decoder()


def read_frames(until):
    global buf
    sock.settimeout(0.2)
    while time.monotonic() < until:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            print("<- connection closed")
            return
        buf += chunk
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            frame, n = hf.Frame.parse_frame_header(memoryview(buf[:9]))
            frame.parse_body(memoryview(buf[9:9 + n]))
            buf = buf[9 + n:]
            extra = ""
            if isinstance(frame, hf.HeadersFrame):
                extra = f" {dec.decode(frame.data)}"
            print(f"<- {frame!r}{extra}")


for f in first:
    print(f"-> {f!r}")
sock.sendall(b"".join(f.serialize() for f in first))
read_frames(time.monotonic() + 0.5)  # let the server answer first, if it does
for f in rest:
    print(f"-> {f!r}")
sock.sendall(b"".join(f.serialize() for f in rest))
read_frames(time.monotonic() + 1.0)
