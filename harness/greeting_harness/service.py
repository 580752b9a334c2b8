"""The service binary on loopback, its bound address read from its own log.

The service is started with PORT=0: the kernel picks a free port when the server
binds, so no two runs can race for a port chosen in advance. The server then says
where it listens in its "listening" log record (JSON, with "addr" and every
effective setting), the only place that port can be learned. Reading that record is
done here, once, for every Python script and, through `python -m greeting_harness
addr`, for scripts/lib.sh; tests/api/helpers.rs is the one Rust copy (the black-box
tests, which must not need Python).
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time


def listening_record(line):
    """The service's "listening" log record in `line`, as a dict with "addr"; None
    for any other line (other records, a wrapper's output such as valgrind's). A bare
    {"addr": ...} line counts too: tests/h2spec/early-answer-prototype.rs, a server
    malformed.py tests, announces itself so."""
    if '"addr"' not in line:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if (isinstance(record, dict) and isinstance(record.get("addr"), str)
            and record.get("message", "listening") == "listening"):
        return record
    return None


class ServiceError(RuntimeError):
    """The server exited, or did not get ready in time, before it listened."""


class Service:
    """A server process started here on loopback, signalled only by its PID.

    `command` is the binary, or a whole command line whose process becomes the server
    (["taskset", "-c", "0", BIN], ["valgrind", ..., BIN]: both exec or stay the one
    process whose PID is signalled). Its environment is this process's (only PATH with
    inherit_env=False, so that no OTEL_* or other setting leaks in) plus PORT, HOST,
    WORKERS=1 (a script measures or probes one core's server), LOG_LEVEL=info and
    LOG_FORMAT=json (the "listening" record is an info-level JSON line), then `env`,
    which may override any of them.

    The constructor returns once the server listens: after its "listening" record, or,
    with listening_line=False (servers that log no such record: the peers in
    perf/peers), once host:port accepts a connection, which needs a fixed `port`.
    stdout and stderr are read all along by a thread into the list `lines` (all of
    them, or at least the last `keep`), so a chatty server never blocks on a full pipe.

    Attributes: proc (the Popen), pid, addr ("host:port"), host, port, settings (the
    listening record; {} without one), lines.
    """

    def __init__(self, command, env=None, *, host="127.0.0.1", port=0, inherit_env=True,
                 listening_line=True, keep=None, timeout=60.0):
        argv = [os.fspath(command)] if isinstance(command, (str, os.PathLike)) else [os.fspath(c) for c in command]
        base = dict(os.environ) if inherit_env else {"PATH": os.environ.get("PATH", "")}
        full = {**base, "PORT": str(port), "HOST": host, "WORKERS": "1", "LOG_LEVEL": "info",
                "LOG_FORMAT": "json", **(env or {})}
        self.lines = []
        self._keep = keep
        self.settings = {}
        self._listening = threading.Event()
        self.proc = subprocess.Popen(argv, env=full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            if listening_line:
                self._wait_listening(timeout)
                self.addr = self.settings["addr"]
            else:
                if not port:
                    raise ValueError("listening_line=False needs the port the server is given")
                self._wait_accepting(host, port, timeout)
                self.addr = f"{host}:{port}"
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        host_part, _, port_part = self.addr.rpartition(":")
        self.host, self.port = host_part.strip("[]"), int(port_part)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if self._keep and len(self.lines) > 2 * self._keep:
                del self.lines[:-self._keep]
            if not self._listening.is_set():
                record = listening_record(line)
                if record is not None:
                    self.settings = record
                    self._listening.set()

    def _failed(self, why):
        self.stop(signal.SIGKILL)
        return ServiceError(f"{self.proc.args}: {why}; its output:\n" + "".join(self.lines))

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.02):
            if self.proc.poll() is not None:
                self._reader.join(2)  # the record may be in the last lines it wrote
                if self._listening.is_set():
                    break
                raise self._failed(f"exited with status {self.proc.returncode} before it listened")
            if time.monotonic() > deadline:
                raise self._failed(f"logged no \"listening\" record in {timeout:.0f} s")

    def _wait_accepting(self, host, port, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise self._failed(f"exited with status {self.proc.returncode} before it accepted")
                if time.monotonic() > deadline:
                    raise self._failed(f"accepted no connection on {host}:{port} in {timeout:.0f} s")
                time.sleep(0.02)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Sends `sig` (SIGTERM: the service's graceful shutdown) unless the server has
        exited, waits up to `timeout` seconds, then kills it; returns its exit status.
        The output it wrote until then (the shutdown report) is in `lines`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
