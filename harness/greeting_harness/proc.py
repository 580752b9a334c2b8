"""A process's resident memory and CPU time, read through psutil.

psutil reads the same /proc files (statm, stat) the scripts used to parse by hand
each in its own way, and answers "gone" (a process that exited, or a zombie) with one
exception instead of a half-read file.
"""

import psutil


def tree(pid):
    """`pid` and the PIDs of all its descendants, parents first; [] when it is gone.
    (A server behind a launcher: `bash -c "exec ..."`, nginx's master and workers.)"""
    try:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]
    except psutil.Error:
        return []


def rss_kib(pid, children=False):
    """Resident memory (VmRSS) in KiB; summed over the descendants too with
    children=True; 0 for a process that is gone."""
    total = 0
    for p in tree(pid) if children else [pid]:
        try:
            total += psutil.Process(p).memory_info().rss // 1024
        except psutil.Error:
            pass
    return total


def cpu_seconds(pid):
    """User + system CPU seconds of a live process (all its threads, not its
    children); None when it is gone."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system
