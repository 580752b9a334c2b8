"""Helpers shared by this repository's Python scripts, tests and load harness.

    from greeting_harness import Service, free_port, rss_kib, cpu_seconds, tree

Service starts the service binary (or a peer server) on loopback and reads its bound
address from its "listening" log record; free_port picks a port for servers given one;
rss_kib, cpu_seconds and tree read a process through psutil. `python -m
greeting_harness` offers the address reading and free_port to shell scripts
(scripts/lib.sh). Installed into .tools/venv by scripts/lib.sh `need_harness`.
"""

from .ports import free_port
from .proc import cpu_seconds, rss_kib, tree
from .service import Service, ServiceError, listening_record

__all__ = ["Service", "ServiceError", "cpu_seconds", "free_port", "listening_record", "rss_kib", "tree"]
