"""The harness for shell scripts (scripts/lib.sh start_server, server_addr, free_port).

    python -m greeting_harness addr LOG PID [--timeout 60]
        Waits for the "listening" record in LOG, the output file of a server that the
        calling shell started in the background as PID (a child of that shell, so it
        can `wait` for it), and prints its address. Exit 1, with LOG on stderr, when
        PID exits first or nothing comes in time.
    python -m greeting_harness free-port [HOST]
        Prints a free port (greeting_harness.free_port).
"""

import argparse
import sys
import time

import psutil

from .ports import free_port
from .service import listening_record


def running(pid):
    """True while `pid` exists and has not exited (a zombie has: the shell that
    started it has not reaped it yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def addr(log, pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        exited = not running(pid)  # before reading: a record written before exit is seen
        try:
            with open(log, errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        for line in text.splitlines(keepends=True):
            record = listening_record(line) if line.endswith("\n") else None
            if record is not None:
                print(record["addr"])
                return 0
        if exited or time.monotonic() > deadline:
            why = "exited before it listened" if exited else f"logged no \"listening\" record in {timeout:.0f} s"
            sys.stderr.write(text)
            print(f"greeting_harness: the server (PID {pid}) {why}; its output is above ({log})", file=sys.stderr)
            return 1
        time.sleep(0.02)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m greeting_harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("addr", help="print the address a server started in the background listens on")
    a.add_argument("log")
    a.add_argument("pid", type=int)
    a.add_argument("--timeout", type=float, default=60.0)
    f = sub.add_parser("free-port", help="print a free port")
    f.add_argument("host", nargs="?", default="127.0.0.1")
    args = ap.parse_args(argv)
    if args.command == "addr":
        return addr(args.log, args.pid, args.timeout)
    print(free_port(args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
