"""A free port for a server this process is about to start."""

import random
import socket
from pathlib import Path


def free_port(host="127.0.0.1"):
    """A port free on `host` for both TCP and UDP, chosen at random below the
    ephemeral range (ip_local_port_range).

    The port is handed to a server started afterwards (PORT=N, dnsmasq's --port, a
    container's -p), so it is not bound here: another process could take it in
    between. A port from bind(("", 0)) is an ephemeral one, which the outgoing
    connections of everything running (a load generator opening thousands) draw
    from; below that range only a listener can take it, and a random choice makes
    two scripts asking at once unlikely to collide. Free for UDP too, for a DNS
    server. Servers that can bind port 0 themselves are better started that way
    (greeting_harness.Service does).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    low = max(low, 12000)
    for _ in range(200):
        port = random.randrange(10000, low)
        socks = []
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                socks.append(s)
                s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise OSError(f"no free port below {low} on {host}")
