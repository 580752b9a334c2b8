"""Summaries (markdown + JSON), the record of the machine and the build, and charts
(matplotlib, pinned in the project's virtual environment)."""
import datetime
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from common import CPUS, ROOT

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else "not found"
    except Exception:  # noqa: BLE001 - a missing tool is reported as such
        return "not found"


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()


def facts(binary, argv):
    """Everything needed to reproduce (or distrust) a result."""
    model = "unknown"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dirty = git("status", "--porcelain", "--untracked-files=no")
    binary = Path(binary)
    sha = hashlib.sha256(binary.read_bytes()).hexdigest()[:16] if binary.exists() else "missing"
    import matplotlib as mpl
    import numpy
    import scipy
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "loadtest/run " + " ".join(argv),
        "commit": git("rev-parse", "--short=12", "HEAD") or "unknown",
        "dirty": bool(dirty),
        "dirty_files": dirty.splitlines()[:30],
        "binary": str(binary), "binary_sha256": sha,
        "binary_version": first_line([str(binary), "--version"]),
        "rustc": first_line(["rustc", "-V"]),
        "cpu_model": model, "cpus": CPUS, "kernel": platform.release(),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "tools": {
            "oha": first_line(["oha", "--version"]), "wrk": first_line(["wrk", "-v"]),
            "h2load": first_line(["h2load", "--version"]), "k6": first_line(["k6", "version"]),
            "haproxy": first_line(["haproxy", "-v"]), "dnsmasq": first_line(["dnsmasq", "--version"]),
            "python": sys.version.split()[0], "matplotlib": mpl.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__,
        },
    }


def facts_md(f):
    dirty = "**dirty** (uncommitted changes: " + ", ".join(x.strip() for x in f["dirty_files"][:8]) + \
        (", …" if len(f["dirty_files"]) > 8 else "") + ")" if f["dirty"] else "clean"
    t = f["tools"]
    return "\n".join([
        f"- date: {f['date']}; command: `{f['command']}`",
        f"- commit: {f['commit']}, tree {dirty}",
        f"- binary: `{f['binary']}` ({f['binary_version']}, sha256 {f['binary_sha256']}…), built by {f['rustc']}",
        f"- machine: {f['cpu_model']}, {f['cpus']} CPUs, kernel {f['kernel']}, load average at start "
        f"{' '.join(f['loadavg_at_start'])}",
        f"- tools: {t['oha']}; {t['wrk']}; {t['h2load']}; {t['k6']}; {t['haproxy']}; {t['dnsmasq']}; "
        f"Python {t['python']}, matplotlib {t['matplotlib']}, numpy {t['numpy']}, scipy {t['scipy']}",
    ])


def fmt(x, digits=2):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def pct(x):
    return "-" if x is None else f"{x * 100:.0f} %"


def limit_cell(r):
    lim = r["limit"]
    if lim == "-":
        return "-"
    text = {"client": "**client-bound**", "server": "server", "machine": "machine (shared CPUs)",
            "client+server": "**client-bound** + server"}.get(lim, lim)
    return text


def server_env_md(servers_env):
    return ", ".join(f"{k}={v}" for k, v in sorted(servers_env.items()))


class Run:
    """One scenario's output folder: raw tool output, summary.md, summary.json, charts."""

    def __init__(self, out_root, scenario, binary, argv):
        self.dir = Path(out_root) / scenario
        if self.dir.exists():
            for p in self.dir.iterdir():
                if p.is_file():
                    p.unlink()
                elif p.is_dir():
                    for q in p.iterdir():
                        q.unlink()
                    p.rmdir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.raw_dir = self.dir / "raw"
        self.scenario = scenario
        self.facts = facts(binary, argv)
        self.lines = [f"# {scenario}", "", facts_md(self.facts), ""]
        self.data = {"scenario": scenario, "facts": self.facts, "results": [], "checks": []}
        self.failed = []

    def text(self, *lines):
        self.lines.extend(lines)

    def table(self, header, rows):
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.lines.append("| " + " | ".join(str(c) for c in row) + " |")
        self.lines.append("")

    def result(self, r):
        self.data["results"].append(r)

    def check(self, name, ok, detail):
        """An assertion: recorded in the summary, and fails the run when false."""
        detail = " ".join(str(detail).split())[:600]
        self.data["checks"].append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"  check {'PASS' if ok else 'FAIL'}: {name}: {detail}", flush=True)
        if not ok:
            self.failed.append(f"{name}: {detail}")

    def checks_md(self):
        if not self.data["checks"]:
            return
        self.lines += ["", "### Checks", ""]
        self.table(["check", "result", "detail"],
                   [[c["check"], "pass" if c["ok"] else "**FAIL**", c["detail"]] for c in self.data["checks"]])

    def image(self, name, title):
        self.lines += [f"![{title}]({name})", ""]

    def finish(self):
        self.checks_md()
        (self.dir / "summary.md").write_text("\n".join(self.lines) + "\n")
        (self.dir / "summary.json").write_text(json.dumps(self.data, indent=1, default=str))
        print(f"results: {self.dir}", flush=True)
        return self.failed


# ---------------------------------------------------------------- standard columns

CLIENT_COLS = ["rps", "client p50 ms", "client p99 ms", "client p99.9 ms", "server p50 ms", "server p99 ms",
               "server CPU µs/req", "server cores", "gen busy", "other load (cores)", "limited by"]


# The service's lowest histogram bucket is 1 µs: a quantile inside it says "at most 1 µs".
FIRST_BUCKET_MS = 0.001


def srv_ms(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"≤ {FIRST_BUCKET_MS:.3f}" if x <= FIRST_BUCKET_MS + 1e-12 else fmt(x, 3)


def client_cols(r):
    if r.get("p99") is None or (isinstance(r.get("p99"), float) and math.isnan(r["p99"])):
        # h2load: mean and max instead of percentiles
        p50, p99, p999 = f"mean {fmt(r.get('mean'))}", "-", f"max {fmt(r.get('max'))}"
    else:
        p50, p99, p999 = fmt(r["p50"]), fmt(r["p99"]), fmt(r["p999"])
    return [fmt(r["rps"], 0), p50, p99, p999, srv_ms(r["srv_p50"]), srv_ms(r["srv_p99"]),
            fmt(r["srv_us_per_req"]), fmt(r["srv_busy"]), pct(r["gen_busy"]), fmt(r["other_cores"]), limit_cell(r)]


def median_result(rs):
    """The repeat with the median throughput (its percentiles belong together)."""
    rs = sorted(rs, key=lambda r: r["rps"])
    return rs[len(rs) // 2]


def spread(rs, key="rps"):
    vals = [r[key] for r in rs]
    if len(vals) < 2:
        return "-"
    med = statistics.median(vals)
    return f"{(max(vals) - min(vals)) / med * 100:.0f} %" if med else "-"


# ---------------------------------------------------------------- charts

def _ticks(ax, axis):
    f = FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 10 else (f"{v:g}"))
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(f)


def _scale(values):
    v = [x for x in values if x is not None and x > 0 and not math.isnan(x)]
    return "log" if v and max(v) / min(v) > 30 else "linear"


def chart(path, title, xlabel, ylabel, series, xlog=None, ylog=None, marks=None, ylim0=None):
    """series: {name: [(x, [y repeats])]}; draws the median line and the min-max spread
    of the repeats. Scales are logarithmic where the values span more than ~1.5
    decades; linear axes fit the data (they do not start at 0 unless ylim0)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    xs_all, ys_all = [], []
    for name, pts in series.items():
        pts = [(x, [y for y in ys if y is not None and not math.isnan(y)]) for x, ys in pts]
        pts = [(x, ys) for x, ys in pts if ys]
        if not pts:
            continue
        xs = [x for x, _ in pts]
        med = [statistics.median(ys) for _, ys in pts]
        lo = [m - min(ys) for m, (_, ys) in zip(med, pts)]
        hi = [max(ys) - m for m, (_, ys) in zip(med, pts)]
        model = "fit" in name or "linear" in name
        line = ax.errorbar(xs, med, yerr=[lo, hi] if any(lo) or any(hi) else None, marker=None if model else "o",
                           ms=4, capsize=3, label=name, linestyle="--" if model else "-")
        if any(len(ys) > 1 for _, ys in pts):
            for x, ys in pts:
                ax.scatter([x] * len(ys), ys, s=8, alpha=0.35, color=line[0].get_color())
        xs_all += xs
        ys_all += [y for _, ys in pts for y in ys]
    if marks:
        for x, y, text in marks:
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7,
                        color="#b03030")
    ax.set_xscale(xlog if xlog else _scale(xs_all))
    ax.set_yscale(ylog if ylog else _scale(ys_all))
    _ticks(ax, "x")
    _ticks(ax, "y")
    if ax.get_xscale() == "linear" and all(float(x).is_integer() for x in xs_all):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_yscale() == "linear":
        if ylim0:
            ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def time_chart(path, title, ylabel, series, ylog=None):
    """series: {name: [(t, y)]} over time."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=110)
    ys_all = []
    for name, pts in series.items():
        pts = [(t, y) for t, y in pts if y is not None and not math.isnan(y)]
        if pts:
            ax.plot([t for t, _ in pts], [y for _, y in pts], marker=".", ms=3, label=name)
            ys_all += [y for _, y in pts]
    ax.set_yscale(ylog if ylog else _scale(ys_all))
    _ticks(ax, "y")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("seconds")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def rel(path, base):
    return os.path.relpath(path, base)
