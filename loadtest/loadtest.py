#!/usr/bin/env python3
"""Load-test scenarios for greeting-service (run through loadtest/run).

Every scenario starts the processes it needs on loopback (service, dnsmasq, HAProxy),
is bounded in time and request count, signals only the processes it started, and
writes OUT/<scenario>/: summary.md, summary.json, charts (PNG) and the raw tool output.
Every result carries the client's view (oha, wrk, h2load or k6), the server's own view
(its /metrics histogram and request counts, its CPU time from /proc) and which side
limited it (see loadtest/README.md for the rule).
"""
import argparse
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (BODY, CPUS, ROOT, Failure, Load, Scrape, Server, ServerDelta, measure,  # noqa: E402
                    parse_cpus, parse_oha, pinned)
import cluster  # noqa: E402
import report  # noqa: E402
from report import chart, client_cols, fmt, limit_cell, median_result, pct, spread, srv_ms, time_chart  # noqa: E402
import usl  # noqa: E402

SCENARIOS = ["selftest", "sweep", "latency", "workers", "replicas", "failover", "connections", "soak", "mixed", "k6"]
ALL = ["sweep", "latency", "workers", "replicas", "connections", "soak", "mixed", "k6"]


# ---------------------------------------------------------------- layout

class Layout:
    """Where the server and the generator run. `auto`: a 1-worker server on CPU 0 and
    the generator on the other CPUs for the single-server scenarios; nothing pinned for
    the scaling scenarios (workers, replicas, failover), whose servers need every CPU."""

    def __init__(self, args, scaling):
        spec = args.pin
        if spec == "auto":
            spec = "none" if scaling or CPUS < 2 else f"0/1-{CPUS - 1}"
        if spec == "none":
            self.server, self.gen = None, None
        else:
            s, _, g = spec.partition("/")
            self.server, self.gen = parse_cpus(s), parse_cpus(g)
        self.desc = (f"server CPUs {','.join(map(str, self.server)) if self.server else 'any'}, "
                     f"load generator CPUs {','.join(map(str, self.gen)) if self.gen else 'any'}")
        self.gen_cores = len(self.gen) if self.gen else CPUS
        self.args = args

    def load(self, client=None, **kw):
        client = client or self.args.client
        threads = self.args.gen_threads or self.gen_cores
        procs = self.args.gen_procs or 1
        return Load(client=client, cpus=self.gen, threads=threads, procs=procs if client == "oha" else 1, **kw)


def server_env(args, extra=None):
    env = {}
    for kv in args.server_env or []:
        k, _, v = kv.partition("=")
        env[k] = v
    env.update(extra or {})
    return env


def settings_md(server):
    s = server.settings
    keys = ("workers", "runtime", "max_connections", "header_timeout", "idle_timeout", "shutdown_timeout",
            "shutdown_delay", "access_log", "tls")
    return ", ".join(f"{k}={s[k]}" for k in keys if k in s)


def header(run, layout, server=None, extra=""):
    run.text(f"- pinning: {layout.desc}" + (f"; server settings (its own log line): {settings_md(server)}"
                                             if server else "") + extra, "")


def note_point(label, r):
    print(f"  {label}: {r['rps']:,.0f} req/s, client p99 {fmt(r['p99'])} ms, server p99 {fmt(r['srv_p99'], 3)} ms, "
          f"server {fmt(r['srv_us_per_req'])} µs/req, gen busy {pct(r['gen_busy'])}, limited by {r['limit']}",
          flush=True)


STANDARD_NOTE = ("Columns: client percentiles from the load generator; server p50/p99 from the service's own "
                 "`http_request_duration_seconds` histogram (bucket deltas between two scrapes, interpolated "
                 "like Prometheus' `histogram_quantile`); server CPU µs/req = server CPU time (/proc) / requests "
                 "the server counted; server cores = server CPU seconds per second; gen busy = generator CPU "
                 "time / (wall time × the cores it may use); limited by: see loadtest/README.md.")


# ---------------------------------------------------------------- sweep

def sweep(args, run):
    layout = Layout(args, scaling=False)
    with Server(args.bin, env=server_env(args), cpus=layout.server, workers=1) as server:
        header(run, layout, server)
        points = []  # (series, conns, streams, [results])
        for c in args.concurrency:
            points.append(("HTTP/1.1", c, 1, []))
        for c in args.h2_concurrency:
            for m in args.h2_streams:
                points.append((f"h2c x{m} streams", c, m, []))
        for rep in range(args.repeat):
            for series, c, m, rs in points:
                if series == "HTTP/1.1":
                    load = layout.load(conns=c, seconds=args.duration)
                else:
                    load = layout.load(client=args.h2_client, conns=c, streams=m, h2=True, seconds=args.duration)
                label = f"{series} c={c} rep {rep + 1}/{args.repeat}"
                r = measure(load, server.url, [server], label, raw_dir=run.raw_dir, expect_status=200)
                r.update(series=series, h2=series != "HTTP/1.1")
                rs.append(r)
                run.result(r)
                note_point(label, r)
    rows = []
    for series, c, m, rs in points:
        r = median_result(rs)
        rows.append([series, c, m, r["client"]] + client_cols(r) + [spread(rs)])
    run.text("Closed loop: each connection sends its next request when the previous answer arrives "
             "(HTTP/2: up to *streams* requests in flight per connection). "
             f"{args.repeat} run(s) per point; the row is the median run, *spread* is (max − min) / median "
             "of the throughput over the runs.", "", STANDARD_NOTE, "")
    run.table(["protocol", "connections", "streams", "client"] + report.CLIENT_COLS + ["spread"], rows)
    tput, p99 = {}, {}
    for series, c, m, rs in points:
        tput.setdefault(series, []).append((c * m, [r["rps"] for r in rs]))
        p99.setdefault(series + " (client)", []).append((c * m, [r["p99"] for r in rs]))
        p99.setdefault(series + " (server)", []).append((c * m, [r["srv_p99"] for r in rs]))
    chart(run.dir / "throughput.png", "Throughput vs requests in flight (connections × streams)",
          "requests in flight", "requests/s", tput, xlog="log")
    run.image("throughput.png", "throughput")
    chart(run.dir / "p99.png", "p99 latency, client and server view", "requests in flight", "ms", p99,
          xlog="log")
    run.image("p99.png", "p99")
    best = max((median_result(rs) for s, c, m, rs in points if s == "HTTP/1.1"), key=lambda r: r["rps"])
    return (f"sweep: HTTP/1.1 peak {best['rps']:,.0f} req/s at {best['conns']} connections "
            f"({best['srv_us_per_req']:.2f} server µs/req, limited by {best['limit']})")


# ---------------------------------------------------------------- latency

def latency(args, run):
    layout = Layout(args, scaling=False)
    with Server(args.bin, env=server_env(args), cpus=layout.server, workers=1) as server:
        header(run, layout, server)
        sat = measure(layout.load(conns=64, seconds=args.duration), server.url, [server], "saturation",
                      raw_dir=run.raw_dir, expect_status=200)
        note_point("saturation", sat)
        run.text(f"Saturation (closed loop, {sat['client']}, 64 connections): {sat['rps']:,.0f} requests/s, "
                 f"limited by {sat['limit']}.", "")
        rows, series = [], {}
        for share in args.rates:
            rate = int(sat["rps"] * share / 100)
            rs = []
            for rep in range(args.repeat):
                load = layout.load(client="oha", conns=64, rate=rate, seconds=args.duration)
                label = f"{share}pct rep {rep + 1}/{args.repeat}"
                r = measure(load, server.url, [server], label, raw_dir=run.raw_dir, expect_status=200)
                r.update(share=share, target=rate)
                rs.append(r)
                run.result(r)
                note_point(label, r)
            r = median_result(rs)
            rows.append([f"{share} %", f"{rate:,}", fmt(r["rps"], 0), fmt(r["p50"]), fmt(r["p90"]), fmt(r["p99"]),
                         fmt(r["p999"]), srv_ms(r["srv_p50"]), srv_ms(r["srv_p99"]), srv_ms(r["srv_p999"]),
                         fmt(r["srv_us_per_req"]), pct(r["gen_busy"]), limit_cell(r), spread(rs, "p99")])
            for key, name in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
                series.setdefault(f"client {name}", []).append((rate, [x[key] for x in rs]))
            series.setdefault("server p99", []).append((rate, [x["srv_p99"] for x in rs]))
    run.text("Open loop (`oha -q RATE --latency-correction`, 64 connections): requests are sent on a schedule, "
             "and client latencies are measured from the scheduled time (corrected for coordinated omission). "
             "A row whose generator is client-bound measures oha's queueing as much as the server. "
             "*spread* is over the client p99 of the runs.", "", STANDARD_NOTE, "")
    run.table(["load", "target rps", "achieved rps", "client p50 ms", "client p90 ms", "client p99 ms",
               "client p99.9 ms", "server p50 ms", "server p99 ms", "server p99.9 ms", "server CPU µs/req",
               "gen busy", "limited by", "spread"], rows)
    chart(run.dir / "latency.png", "Latency percentiles vs request rate (open loop)", "requests/s", "ms", series)
    run.image("latency.png", "latency")
    return f"latency: saturation {sat['rps']:,.0f} req/s ({sat['limit']}); see latency/summary.md per rate"


# ---------------------------------------------------------------- scaling (workers, replicas)

def usl_section(run, name, unit, points, chart_name, extra_series=None):
    f = usl.fit(points)
    run.data.setdefault("usl", {})[name] = f
    ns = sorted({n for n, _ in points})
    series = {"measured": [(n, [x for m, x in points if m == n]) for n in ns]}
    if not math.isnan(f.get("sigma", float("nan"))):
        grid = [1 + i / 10 for i in range(int((max(ns) - 1) * 10) + 1)] if max(ns) > 1 else ns
        series["USL fit"] = [(n, [float(usl.usl(n, f["lam"], f["sigma"], f["kappa"]))]) for n in grid]
        series["linear (λN)"] = [(n, [f["lam"] * n]) for n in grid]
    chart(run.dir / chart_name, f"Throughput vs {unit}s, with the USL fit", unit + "s", "requests/s", series,
          xlog="linear", ylog="linear", ylim0=True)
    run.image(chart_name, f"{name} scaling")
    run.text(f"**USL fit ({name})**: {usl.describe(f, unit)}.", "")
    return f


TWO_CPUS = ("**What {cpus} CPUs can and cannot show.** The service, the load generator{lb} and everything "
            "else on the machine share {cpus} cores, so beyond N = 1 the servers cannot get cores of their own: "
            "the throughput curve measures how the machine's cores are divided, not how the design would scale "
            "on idle cores, and σ above absorbs that competition (it is not the service's serialized fraction). "
            "What these points can show: the server CPU per request as N grows — flat means adding "
            "workers/replicas adds no per-request cost (no lock or cache-line contention between them); a rise "
            "is the cost of contention or of oversubscribed cores. What they cannot show: whether N workers on "
            "N idle cores give N× the throughput; that needs a machine with more cores than server + generator "
            "use. The per-core design claim rests on the contention benchmark instead (below).")


def contention_section(run, crit):
    """The per-core design claim's evidence: benches/contention.rs (criterion figures
    from `cargo bench --bench contention`, run before this scenario)."""
    import json
    bench = ROOT / "benches" / "contention.rs"
    if not bench.exists():
        run.text("**Contention benchmark**: `benches/contention.rs` is not in this tree; the per-core design "
                 "claim has no direct evidence here.", "")
        return
    run.text("**Contention benchmark** (`cargo bench --bench contention`): the cost of recording one request "
             "(metrics and a request id) when two threads record at once against one thread alone: `sharded` is "
             "what the service does (each worker writes its own shard), `shared` one array of atomics every "
             "thread adds to (the design before sharding). Equal figures mean the workers share no cache line "
             "per request: that, not the throughput curve above, is the evidence for the per-core design on "
             "this machine. (`cargo bench --bench contention -- --check` checks the ratio on a quiet machine; CI checks "
             "the sharding itself without a clock, in a unit test.)", "")
    est = {}
    for p in sorted(Path(crit).glob("contention/*/*/new/estimates.json")):
        case, threads = p.parent.parent.parent.name, p.parent.parent.name
        n = 2 if threads.startswith("2") else 1
        est.setdefault(case, {})[n] = json.loads(p.read_text())["median"]["point_estimate"]
    if not est:
        run.text(f"(no criterion results under `{crit}/contention/`: run `cargo bench --bench contention` before "
                 "this scenario to include its figures)", "")
        return
    rows = [[case, fmt(v.get(1), 2), fmt(v.get(2), 2), fmt(v[2] / v[1], 2) if 1 in v and 2 in v else "-"]
            for case, v in sorted(est.items())]
    run.table(["case", "1 thread ns/record", "2 threads ns/record", "2 / 1"], rows)
    run.data["contention"] = est
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    cases = sorted(est)
    for i, n in enumerate((1, 2)):
        ax.bar([c + (0.2 if i else -0.2) for c in range(len(cases))], [est[c].get(n, 0) for c in cases], 0.4,
               label=f"{n} thread{'s' if n > 1 else ''}")
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel("ns per record (median)")
    ax.set_title("Recording a request: one thread vs two at once", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(run.dir / "contention.png")
    plt.close(fig)
    run.image("contention.png", "contention benchmark")


def workers(args, run):
    layout = Layout(args, scaling=True)
    extra = server_env(args)
    header(run, layout, extra="; service environment: WORKERS and RUNTIME per row" +
           (", " + ", ".join(f"{k}={v}" for k, v in extra.items()) if extra else "") +
           " (each result's full settings, from the service's own log line, are in summary.json)")
    results, points = [], {}
    runtimes = args.runtimes
    for rep in range(args.repeat):
        for rt in runtimes:
            for w in range(1, args.max_workers + 1):
                with Server(args.bin, env=server_env(args, {"RUNTIME": rt}), cpus=layout.server, workers=w) as s:
                    label = f"{rt} WORKERS={w} rep {rep + 1}/{args.repeat}"
                    r = measure(layout.load(conns=args.scale_conns, seconds=args.duration), s.url, [s], label,
                                raw_dir=run.raw_dir, expect_status=200)
                r.update(workers=w, runtime=rt)
                results.append(r)
                run.result(r)
                points.setdefault(rt, []).append((w, r["rps"]))
                note_point(label, r)
    run.text(f"Closed loop, {args.scale_conns} connections, {results[0]['client']}; one server per point, "
             f"WORKERS = 1 .. {args.max_workers}, {args.repeat} run(s) each. *machine busy* is all CPUs "
             "(/proc/stat), *other cores* the CPU used by processes that are not part of the run.", "",
             STANDARD_NOTE, "")
    rows = []
    for rt in runtimes:
        base = None
        for w in range(1, args.max_workers + 1):
            rs = [r for r in results if r["workers"] == w and r["runtime"] == rt]
            r = median_result(rs)
            base = base or r["rps"]
            rows.append([rt, w, fmt(r["rps"], 0), fmt(r["rps"] / base), spread(rs), fmt(r["srv_us_per_req"]),
                         fmt(r["srv_busy"]), pct(r["gen_busy"]), pct(r["machine_busy"]), fmt(r["other_cores"]),
                         fmt(r["p99"]), srv_ms(r["srv_p99"]), limit_cell(r)])
    run.table(["runtime", "workers", "rps", "vs 1", "spread", "server CPU µs/req", "server cores", "gen busy",
               "machine busy", "other cores", "client p99 ms", "server p99 ms", "limited by"], rows)
    chart(run.dir / "workers-cpu.png", "Server CPU per request vs WORKERS", "workers", "µs per request",
          {rt: [(w, [r["srv_us_per_req"] for r in results if r["workers"] == w and r["runtime"] == rt])
                for w in range(1, args.max_workers + 1)] for rt in runtimes}, xlog="linear", ylim0=True)
    run.image("workers-cpu.png", "CPU per request")
    fits = {rt: usl_section(run, f"workers, {rt}", "worker", points[rt], f"workers-usl-{rt}.png")
            for rt in runtimes}
    run.text(TWO_CPUS.format(cpus=CPUS, lb=""), "")
    contention_section(run, args.criterion_dir)
    f = fits[runtimes[0]]
    bound = sorted({r["limit"] for r in results})
    return f"workers: {usl.describe(f, 'worker')}; limits seen: {', '.join(bound)}"


def replicas(args, run):
    layout = Layout(args, scaling=True)
    cfg, cfg_note = cluster.haproxy_config(args.haproxy_cfg)
    run.data["haproxy_config"] = cfg_note
    header(run, layout, extra=f"; HAProxy config: {cfg_note}")
    results, points = [], []
    for rep in range(args.repeat):
        for n in range(1, args.max_replicas + 1):
            with cluster.Cluster(args.bin, n, cfg, env=server_env(args), server_cpus=layout.server,
                                 lb_cpus=None) as cl:
                label = f"replicas={n} rep {rep + 1}/{args.repeat}"
                r = measure(layout.load(conns=args.scale_conns, seconds=args.duration), cl.url, cl.replicas,
                            label, extra_pids=[cl.lb_pid], raw_dir=run.raw_dir, expect_status=200)
                settings = settings_md(cl.replicas[0])
            r.update(replicas=n, lb_us_per_req=(r["lb_cpu_s"] or 0) * 1e6 / max(1, r["srv_requests"]))
            results.append(r)
            run.result(r)
            points.append((n, r["rps"]))
            note_point(label, r)
    run.text(f"Replicas (each: {settings}) on 127.0.0.2, 127.0.0.3, ... one port; a dnsmasq started here answers "
             f"the service name with one A record per replica; HAProxy runs the config above with GS_BIND, "
             f"GS_STATS_BIND, GS_SERVICE, GS_PORT and GS_RESOLVER pointing at them. Closed loop, "
             f"{args.scale_conns} keep-alive connections to HAProxy, {results[0]['client']}.", "", STANDARD_NOTE,
             "HAProxy CPU µs/req is the balancer's own CPU per request.", "")
    rows = []
    base = None
    for n in range(1, args.max_replicas + 1):
        rs = [r for r in results if r["replicas"] == n]
        r = median_result(rs)
        base = base or r["rps"]
        rows.append([n, fmt(r["rps"], 0), fmt(r["rps"] / base), spread(rs), fmt(r["srv_us_per_req"]),
                     fmt(r["lb_us_per_req"]), fmt(r["srv_busy"]), pct(r["gen_busy"]), pct(r["machine_busy"]),
                     fmt(r["other_cores"]), fmt(r["p99"]), srv_ms(r["srv_p99"]), limit_cell(r)])
    run.table(["replicas", "rps", "vs 1", "spread", "server CPU µs/req", "HAProxy CPU µs/req", "server cores",
               "gen busy", "machine busy", "other cores", "client p99 ms", "server p99 ms", "limited by"], rows)
    f = usl_section(run, "replicas", "replica", points, "replicas-usl.png")
    run.text(TWO_CPUS.format(cpus=CPUS, lb=", HAProxy"), "")
    head = f"replicas: {usl.describe(f, 'replica')}"
    if not args.no_failover:
        run.text("", "## Failover", "")
        outs = [failover_one(args, run, cfg, layout, sig) for sig in (signal.SIGTERM, signal.SIGKILL)]
        head += "; failover: " + "; ".join(outs)
    return head


def failover(args, run):
    layout = Layout(args, scaling=True)
    cfg, cfg_note = cluster.haproxy_config(args.haproxy_cfg)
    run.data["haproxy_config"] = cfg_note
    header(run, layout, extra=f"; HAProxy config: {cfg_note}")
    outs = [failover_one(args, run, cfg, layout, sig) for sig in (signal.SIGTERM, signal.SIGKILL)]
    return "failover: " + "; ".join(outs)


def failover_one(args, run, cfg, layout, sig):
    """Two replicas behind HAProxy under keep-alive load; one is signalled mid-run."""
    name = "SIGTERM" if sig == signal.SIGTERM else "SIGKILL"
    env = server_env(args, {"SHUTDOWN_DELAY": args.shutdown_delay} if sig == signal.SIGTERM else {})
    seconds = args.failover_seconds
    at = seconds / 3
    state = {}
    with cluster.Cluster(args.bin, args.failover_replicas, cfg, env=env, server_cpus=layout.server) as cl:
        victim = cl.replicas[0]
        b0 = cl.backend_stats()

        def tick(elapsed):
            if "signalled" in state:
                return
            # Sample what is in flight on the victim right before the signal.
            if elapsed >= at - 0.3 and "pre" not in state:
                state["pre"] = True
                try:
                    state["victim_conns"] = int(Scrape.of(victim).gauges.get("http_connections_open", -1))
                except OSError:
                    state["victim_conns"] = -1
                st = cl.stats().get(victim.host, {})
                state["scur"] = int(st.get("scur") or 0)
                state["victim_served_before"] = int(st.get("stot") or 0)
            if elapsed >= at:
                st = cl.stats().get(victim.host, {})
                state["scur"] = max(state.get("scur", 0), int(st.get("scur") or 0))
                try:
                    state["victim_conns"] = max(state.get("victim_conns", -1),
                                                int(Scrape.of(victim).gauges.get("http_connections_open", -1)))
                except OSError:
                    pass
                victim.send(sig)
                state["signalled"] = time.time()
                print(f"  [{name}] sent to replica {victim.host} at {elapsed:.1f}s "
                      f"(HAProxy sessions on it: {state['scur']}, its open connections: {state['victim_conns']})",
                      flush=True)

        load = layout.load(client="oha", conns=args.failover_conns, rate=args.failover_rate, seconds=seconds)
        r = measure(load, cl.url, cl.replicas, f"failover {name}", extra_pids=[cl.lb_pid], raw_dir=run.raw_dir,
                    on_tick=tick, progress=seconds >= 20)
        b1 = cl.backend_stats()
        vst = cl.stats().get(victim.host, {})
        try:
            victim.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            pass
        exit_code = victim.proc.returncode
        shut = victim.shutdown_line()

    failed = sum(v for k, v in r["statuses"].items() if not 200 <= k < 300) + sum(r["errors"].values())
    retries = int(b1.get("wretr") or 0) - int(b0.get("wretr") or 0)
    redisp = int(b1.get("wredis") or 0) - int(b0.get("wredis") or 0)
    in_flight = state.get("victim_conns", -1)
    row = {"signal": name, "requests": r["requests"], "failed": failed, "errors": r["errors"],
           "non_2xx": {k: v for k, v in r["statuses"].items() if not 200 <= k < 300},
           "haproxy_sessions_on_victim": state.get("scur"), "victim_open_connections": in_flight,
           "retries": retries, "redispatches": redisp, "victim_exit": exit_code, "victim_shutdown": shut,
           "victim_status_after": vst.get("status"), "rate": args.failover_rate, "conns": args.failover_conns,
           "seconds": seconds, "signal_at_s": round(at, 1), "client_p99": r["p99"], "client_max_ms": r.get("max")}
    run.data.setdefault("failover", []).append(row)
    run.result(r)
    print(f"  [{name}] requests {r['requests']:,}, failed {failed} ({r['errors']} "
          f"{row['non_2xx']}), HAProxy retries {retries}, redispatches {redisp}", flush=True)
    run.text(f"### {name} to one of {args.failover_replicas} replicas", "",
             f"oha, {args.failover_conns} keep-alive connections to HAProxy at {args.failover_rate:,} requests/s "
             f"(open loop) for {seconds} s; replica {victim.host} gets {name} at {at:.1f} s" +
             (f" with SHUTDOWN_DELAY={args.shutdown_delay} (it keeps serving with /readyz 503 while HAProxy's "
              f"health check takes it out, then drains)." if sig == signal.SIGTERM else
              " (no drain: its connections are reset)."), "")
    run.table(["requests", "failed", "in flight on it (HAProxy sessions)", "its open connections (bound)",
               "HAProxy retries", "redispatches", "replica exit", "shutdown log", "client p99 ms",
               "client max ms", "server p99 ms", "limited by"],
              [[f"{r['requests']:,}", failed, state.get("scur", "-"), in_flight, retries, redisp,
                exit_code, f"drained {shut['drained']}, cut {shut['cut']}" if shut else "-", fmt(r["p99"]),
                fmt(r.get("max")), srv_ms(r["srv_p99"]), limit_cell(r)]])
    if sig == signal.SIGTERM:
        run.check("failover SIGTERM: no failed request", failed == 0,
                  f"{failed} failed of {r['requests']:,} (errors {r['errors']}, non-2xx {row['non_2xx']})")
        run.check("failover SIGTERM: the replica exited 0 after draining", exit_code == 0,
                  f"exit {exit_code}, {shut}")
    else:
        bound = in_flight if in_flight >= 0 else args.failover_conns
        run.check("failover SIGKILL: failed ≤ requests in flight on the killed replica", failed <= bound,
                  f"{failed} failed of {r['requests']:,}; in flight ≤ {bound} (its open connections just before "
                  f"the kill; HAProxy sessions on it {state.get('scur')}); HAProxy retried {retries}")
    # What makes the failover meaningful is that the victim was carrying traffic when
    # it was signalled, not that this machine reached the requested rate: with
    # another process on the cores (a build beside CI) it may not, and the run is
    # still a valid failover. The rate reached is reported, not asserted.
    carrying = max(int(state.get("scur") or 0), in_flight)
    run.check(f"failover {name}: the replica was carrying connections when signalled", carrying > 0,
              f"HAProxy sessions on it {state.get('scur')}, its open connections {in_flight}; "
              f"{r['rps']:,.0f} of {args.failover_rate:,} requests/s reached")
    return f"{name}: {failed} failed of {r['requests']:,}"


# ---------------------------------------------------------------- connections

def connections(args, run):
    layout = Layout(args, scaling=False)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle + 4096)), hard))
    req = (b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 15\r\n\r\n" + BODY.encode())
    env = server_env(args, {"MAX_CONNECTIONS": str(args.idle + 2000)})
    with Server(args.bin, env=env, cpus=layout.server, workers=1) as server:
        header(run, layout, server)
        before = measure(layout.load(conns=64, seconds=args.duration), server.url, [server], "before",
                         raw_dir=run.raw_dir, expect_status=200)
        note_point("without idle connections", before)
        time.sleep(0.5)
        rss0, fds0 = server.rss_kib(), server.fds()
        socks = []
        t0 = time.time()
        for i in range(args.idle):
            s = socket.create_connection((server.host, server.port))
            s.sendall(req)
            if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                raise Failure("idle connection setup failed")
            socks.append(s)
            if (i + 1) % 2000 == 0:
                print(f"  [connections] {i + 1:,} idle connections open ({time.time() - t0:.0f}s)", flush=True)
        time.sleep(1)
        rss1 = server.rss_kib()
        during = measure(layout.load(conns=64, seconds=args.duration), server.url, [server], "with idle",
                         raw_dir=run.raw_dir, expect_status=200)
        note_point(f"with {args.idle:,} idle connections", during)
        served = 0
        for s in socks[:: max(1, len(socks) // 100)]:
            s.sendall(req)
            if s.recv(4096).startswith(b"HTTP/1.1 200"):
                served += 1
        for s in socks:
            s.close()
        deadline = time.time() + 10
        while server.fds() > fds0 + 5 and time.time() < deadline:
            time.sleep(0.1)
        fds_end = server.fds()
    run.result(before)
    run.result(during)
    per = (rss1 - rss0) / max(1, args.idle)
    run.text(f"{args.idle:,} keep-alive connections, each after one request, held open while the "
             "throughput is measured again.", "", STANDARD_NOTE, "")
    run.table(["idle connections", "RSS before KiB", "RSS with them KiB", "KiB per connection", "fds with them",
               "fds after close"], [[f"{args.idle:,}", f"{rss0:,}", f"{rss1:,}", fmt(per), fds0 + args.idle, fds_end]])
    run.table(["", "client"] + report.CLIENT_COLS,
              [["without", before["client"]] + client_cols(before), ["with idle", during["client"]] + client_cols(during)])
    run.check("idle connections still served", served == len(socks[:: max(1, len(socks) // 100)]),
              f"{served} sampled idle connections answered 200")
    run.check("fds back to baseline after the idle connections close", fds_end <= fds0 + 2,
              f"{fds0} before, {fds_end} after")
    return (f"connections: {per:.1f} KiB per idle connection; {during['rps']:,.0f} vs {before['rps']:,.0f} "
            f"req/s with/without {args.idle:,} idle")


# ---------------------------------------------------------------- soak

def soak_windows(args, layout, server, rate, window):
    """The soak's load: back-to-back oha windows of `window` seconds, each started on
    schedule (t0 + k × window) while the previous one finishes its last requests, so
    the rate has no gaps; oha keeps every result in memory, and windows keep that
    bounded for a soak of any length. After each window: its client percentiles and
    errors, and the server's own view of the same interval (a /metrics scrape at each
    window boundary, CPU from /proc, RSS, fds)."""
    tmp = Path(tempfile.mkdtemp(prefix="loadtest-soak-"))
    t0 = time.time()
    t_end = t0 + args.soak
    starts, k = [], 0
    running = {}  # pid -> (k, Popen, file, start)
    finished = {}  # k -> client digest
    boundary = {0: (Scrape.of(server), server.cpu(), t0)}
    samples, results = [], []
    total_req = 0
    next_start = t0
    last_end = t0
    printed = 0
    while True:
        now = time.time()
        if next_start is not None and now >= next_start:
            secs = min(window, t_end - next_start)
            if secs >= 1:
                load = layout.load(client="oha", conns=args.soak_conns, rate=rate, seconds=round(secs, 2))
                cmd = load.commands(server.url, tmp)[0]
                out = open(tmp / f"w{k}.json", "w+")
                p = subprocess.Popen(pinned(cmd, load.cpus), stdout=out, stderr=subprocess.STDOUT)
                running[p.pid] = (k, p, out, now, load)
                if k > 0:
                    boundary[k] = (Scrape.of(server), server.cpu(), now)
                starts.append(now)
                k += 1
                next_start += secs
                if next_start >= t_end - 1:
                    next_start = None
            else:
                next_start = None
        for pid in list(running):
            got, status, ru = os.wait4(pid, os.WNOHANG)
            if got != pid:
                continue
            i, p, out, start, load = running.pop(pid)
            end = time.time()
            last_end = max(last_end, end)
            out.seek(0)
            text = out.read()
            out.close()
            if os.waitstatus_to_exitcode(status) != 0:
                raise Failure(f"oha failed in soak window {i}: {text[-500:]}")
            d = parse_oha(text)
            if args.raw_windows:
                Path(args.raw_windows).mkdir(parents=True, exist_ok=True)
                (Path(args.raw_windows) / f"window-{i:04d}.json").write_text(text)
            d["gen_cpu_s"] = ru.ru_utime + ru.ru_stime
            d["wall_s"] = end - start
            d["gen_busy"] = d["gen_cpu_s"] / (d["wall_s"] * load.cores())
            finished[i] = d
        # A window's line is printed once the window is done and the next boundary scraped.
        while printed in finished and (printed + 1 in boundary or (next_start is None and not running)):
            i = printed
            d = finished[i]
            if i + 1 not in boundary:
                boundary[i + 1] = (Scrape.of(server), server.cpu(), time.time())
            (sb, cb, tb), (sa, ca, ta) = boundary[i], boundary[i + 1]
            srv = ServerDelta([sb], [sa])
            errors = sum(d["errors"].values()) + sum(v for c, v in d["statuses"].items() if not 200 <= c < 300) \
                + sum(v for c, v in srv.statuses.items() if not str(c).startswith("2"))
            total_req += d["requests"]
            srv_cpu = (ca or 0) - (cb or 0)
            sample = {"t": round(ta - t0, 1), "requests": d["requests"], "errors": errors,
                      "rps": d["requests"] / d["seconds"], "rss_kib": server.rss_kib(), "fds": server.fds(),
                      "p50": d["p50"], "p99": d["p99"], "p999": d["p999"],
                      "srv_requests": srv.requests, "srv_p50": srv.quantile_ms(0.5), "srv_p99": srv.quantile_ms(0.99),
                      "srv_p999": srv.quantile_ms(0.999),
                      "srv_us_per_req": srv_cpu * 1e6 / srv.requests if srv.requests else float("nan"),
                      "srv_busy": srv_cpu / max(1e-9, ta - tb), "gen_busy": d["gen_busy"],
                      "client_bound": d["gen_busy"] >= 0.9, "client_errors": d["errors"]}
            samples.append(sample)
            results.append(d)
            print(f"  [soak] {sample['t']:6.0f}s  requests {total_req:,} (+{d['requests']:,} at {sample['rps']:,.0f}/s), "
                  f"errors {sum(x['errors'] for x in samples)}, RSS {sample['rss_kib']:,} KiB, fds {sample['fds']}, "
                  f"p99 client {fmt(d['p99'])} ms / server {fmt(sample['srv_p99'], 3)} ms, "
                  f"gen {pct(d['gen_busy'])}", flush=True)
            printed += 1
        if next_start is None and not running and printed >= k:
            break
        if time.time() > t_end + 120:
            for _, p, _, _, _ in running.values():
                p.kill()
            raise Failure("soak windows did not finish")
        time.sleep(0.02)
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return samples, results, total_req, last_end - t0


def soak(args, run):
    layout = Layout(args, scaling=False)
    window = args.soak_window
    with Server(args.bin, env=server_env(args), cpus=layout.server, workers=1) as server:
        header(run, layout, server)
        if args.soak_rate:
            rate, how = args.soak_rate, "requested"
        else:
            probe = measure(layout.load(client="oha", conns=64, seconds=3), server.url, [server], "soak probe",
                            expect_status=200)
            rate, how = int(probe["rps"] * 0.5), f"50 % of oha's closed-loop {probe['rps']:,.0f}/s"
        time.sleep(0.5)
        rss_base, fds_base = server.rss_kib(), server.fds()
        print(f"  [soak] {args.soak:.0f}s at {rate:,} requests/s ({how}); a window and a progress line every "
              f"{window:.0f}s; RSS {rss_base:,} KiB, fds {fds_base}", flush=True)
        args.raw_windows = run.raw_dir / "soak-windows"
        samples, results, total_req, elapsed = soak_windows(args, layout, server, rate, window)
        deadline = time.time() + 10
        while server.fds() > fds_base and time.time() < deadline:
            time.sleep(0.1)
        fds_end, rss_end = server.fds(), server.rss_kib()
    run.data["samples"] = samples
    for r in results:
        r.pop("output", None)
    run.data["windows"] = results
    achieved = total_req / elapsed
    errors = sum(s["errors"] for s in samples)
    rss_ref = samples[0]["rss_kib"] if samples else rss_base
    growth = rss_end - rss_ref
    rss = [s["rss_kib"] for s in samples]
    p99s = sorted(s["p99"] for s in samples)
    srv_p99s = sorted(s["srv_p99"] for s in samples if not math.isnan(s["srv_p99"]))
    client_bound = sum(1 for s in samples if s["client_bound"])
    run.text(f"Open loop at {rate:,} requests/s ({how}), {args.soak_conns} connections, for {args.soak} s, "
             f"run as back-to-back {window:.0f}-second oha windows, each started on schedule while the previous one "
             "answers its last requests (no gap in the rate; bounded memory in oha for a soak of any length; "
             "each window opens fresh connections, so connection setup and teardown are soaked too). After each "
             "window: its client percentiles and errors, the server's own histogram and counters for the same "
             "interval, RSS and fds. The RSS bound is checked from the end of the first window (allocator "
             "warm-up) to the end; fds from before the load to after it.", "")
    run.table(["requests", "errors", "requested rps", "achieved rps", "RSS idle → after 1st window → end KiB",
               "RSS max KiB", "fds idle / min-max / end", "client p99 ms (median of windows, worst)",
               "server p99 ms (median, worst)", "server CPU µs/req", "client-bound windows"],
              [[f"{total_req:,}", errors, f"{rate:,}", fmt(achieved, 0), f"{rss_base:,} → {rss_ref:,} → {rss_end:,}",
                f"{max(rss) if rss else 0:,}", f"{fds_base} / {min(s['fds'] for s in samples)}-"
                f"{max(s['fds'] for s in samples)} / {fds_end}", f"{fmt(p99s[len(p99s) // 2])}, {fmt(p99s[-1])}",
                f"{srv_ms(srv_p99s[len(srv_p99s) // 2])}, {srv_ms(srv_p99s[-1])}" if srv_p99s else "-",
                fmt(statistics.median(s["srv_us_per_req"] for s in samples)), f"{client_bound} of {len(samples)}"]])
    ts = [s["t"] for s in samples]
    time_chart(run.dir / "soak-latency.png", "Latency over the soak (per window)", "ms",
               {f"client {k}": [(t, s[k]) for t, s in zip(ts, samples)] for k in ("p50", "p99", "p999")}
               | {f"server {k[4:]}": [(t, s[k]) for t, s in zip(ts, samples)] for k in ("srv_p50", "srv_p99")})
    run.image("soak-latency.png", "soak latency")
    time_chart(run.dir / "soak-rss.png", "Resident memory", "KiB", {"RSS": [(s["t"], s["rss_kib"]) for s in samples]},
               ylog="linear")
    run.image("soak-rss.png", "soak RSS")
    time_chart(run.dir / "soak-fds.png", "Open file descriptors", "fds", {"fds": [(s["t"], s["fds"]) for s in samples]},
               ylog="linear")
    run.image("soak-fds.png", "soak fds")
    time_chart(run.dir / "soak-rate.png", "Achieved rate per window", "requests/s",
               {"achieved": [(s["t"], s["rps"]) for s in samples], "requested": [(s["t"], rate) for s in samples]},
               ylog="linear")
    run.image("soak-rate.png", "soak rate")
    run.check("soak: no errors", errors == 0, f"{errors} errors in {total_req:,} requests")
    run.check("soak: achieved rate within 5 % of the requested", abs(achieved - rate) <= 0.05 * rate,
              f"{achieved:,.0f} of {rate:,} requests/s ({(achieved / rate - 1) * 100:+.1f} %)")
    run.check("soak: RSS growth bounded", growth <= args.soak_rss_growth_kib,
              f"{growth:+,} KiB after the first window (bound {args.soak_rss_growth_kib:,} KiB)")
    run.check("soak: fds back to baseline at the end", fds_end <= fds_base,
              f"{fds_base} before the load, {fds_end} after it")
    return (f"soak: {total_req:,} requests at {achieved:,.0f}/s over {elapsed:.0f} s, {errors} errors, RSS "
            f"{growth:+,} KiB, fds {fds_base}→{fds_end}")


# ---------------------------------------------------------------- mixed

MIX = [
    ("valid", "POST", "/greet", BODY, "application/json", 200),
    ("unicode name", "POST", "/greet", '{"name":"Zoë 日本 😀 <b>"}', "application/json", 200),
    ("malformed JSON", "POST", "/greet", '{"name":', "application/json", 400),
    ("empty name", "POST", "/greet", '{"name":"   "}', "application/json", 400),
    ("oversize body", "POST", "/greet", '{"name":"' + "x" * 17000 + '"}', "application/json", 413),
    ("wrong method", "GET", "/greet", None, None, 405),
    ("wrong media type", "POST", "/greet", BODY, "text/plain", 415),
    ("unknown path", "GET", "/nope", None, None, 404),
]


def mixed(args, run):
    layout = Layout(args, scaling=False)
    rows, rs_all = [], {}
    with Server(args.bin, env=server_env(args), cpus=layout.server, workers=1) as server:
        header(run, layout, server)
        for rep in range(args.repeat):
            for name, method, path, body, ctype, status in MIX:
                load = layout.load(conns=64, seconds=args.duration, method=method, path=path, body=body,
                                   ctype=ctype or "application/json")
                label = f"{name} rep {rep + 1}/{args.repeat}"
                r = measure(load, server.url, [server], label, raw_dir=run.raw_dir)
                srv_bad = {k: v for k, v in r["srv_statuses"].items() if k != str(status)}
                # The server's counts are the truth here (wrk cannot tell codes apart). An
                # oversize body is answered early and its connection closed: the client may
                # see the rest of its write fail, never another status.
                if srv_bad or (r["errors"] and status != 413):
                    raise Failure(f"{name}: expected only {status}; server counted {r['srv_statuses']}, "
                                  f"client errors {r['errors']}")
                r.update(case=name, expect=status)
                rs_all.setdefault(name, []).append(r)
                run.result(r)
                note_point(label, r)
    happy = median_result(rs_all["valid"])["srv_us_per_req"]
    for name, method, path, body, ctype, status in MIX:
        rs = rs_all[name]
        r = median_result(rs)
        rows.append([name, status, fmt(r["srv_us_per_req"] / happy)] + client_cols(r) + [spread(rs)])
    run.text("Each request class on its own (closed loop, 64 connections); statuses checked on the server's "
             "own counters. *vs valid* compares server CPU per request with a valid greeting.", "", STANDARD_NOTE, "")
    run.table(["request", "status", "vs valid"] + report.CLIENT_COLS + ["spread"], rows)
    chart(run.dir / "mixed-cpu.png", "Server CPU per request, by request class", "class (see table order)",
          "µs per request", {"server CPU": [(i + 1, [x["srv_us_per_req"] for x in rs_all[m[0]]])
                                            for i, m in enumerate(MIX)]}, xlog="linear", ylog="log")
    run.image("mixed-cpu.png", "CPU per class")
    worst = max(rows[1:], key=lambda row: float(row[2]))
    return f"mixed: error paths {min(float(r[2]) for r in rows[1:]):.2f}x-{float(worst[2]):.2f}x a valid greeting's CPU"


# ---------------------------------------------------------------- k6

def k6(args, run):
    layout = Layout(args, scaling=False)
    with Server(args.bin, env=server_env(args), cpus=layout.server, workers=1) as server:
        header(run, layout, server)
        secs = max(1, int(round(args.duration)))
        load = layout.load(client="k6", conns=0, seconds=3 * secs,
                           env={"BASE_URL": server.url, "RATE": str(args.k6_rate), "DURATION": f"{secs}s",
                                "P99_MS": str(args.k6_p99_ms)})
        load.threads = layout.gen_cores  # Go uses every CPU it may
        r = measure(load, server.url, [server], "k6", raw_dir=run.raw_dir, progress=3 * secs >= 20)
    note_point("k6", r)
    (run.dir / "raw").mkdir(exist_ok=True)
    (run.dir / "raw" / "k6-output.txt").write_text(r.pop("output", ""))
    run.result(r)
    run.text(f"`loadtest/k6/greet.js`: constant arrival rate {args.k6_rate}/s for {secs} s, then ramping "
             f"{args.k6_rate // 4} → {args.k6_rate} → {args.k6_rate // 4} over {2 * secs} s, checks on status and "
             f"body, thresholds: failed < 0.1 %, p99 < {args.k6_p99_ms} ms, checks > 99.9 %.", "", STANDARD_NOTE, "")
    run.table(["requests", "failed", "checks passed", "checks failed", "achieved rps", "client p50 ms",
               "client p99 ms", "client p99.9 ms", "server p50 ms", "server p99 ms", "server CPU µs/req",
               "gen busy", "limited by"],
              [[f"{r['requests']:,}", sum(r["errors"].values()), r.get("checks_passed"), r.get("checks_failed"),
                fmt(r["requests"] / r["wall_s"], 0), fmt(r["p50"]), fmt(r["p99"]), fmt(r["p999"]),
                srv_ms(r["srv_p50"]), srv_ms(r["srv_p99"]), fmt(r["srv_us_per_req"]), pct(r["gen_busy"]),
                limit_cell(r)]])
    run.check("k6: thresholds met", r.get("exit_code") == 0, f"k6 exit code {r.get('exit_code')} "
              f"(non-zero: a threshold was crossed)")
    return f"k6: {r['requests']:,} requests, {sum(r['errors'].values())} failed, p99 {fmt(r['p99'])} ms"


# ---------------------------------------------------------------- self-test

def selftest(args, run):
    """The arithmetic every table relies on, checked on known inputs (no load)."""
    from common import classify, histogram_quantile, merge_client, parse_h2load, parse_wrk
    b = {1e-05: 0, 2.5e-05: 50, 5e-05: 90, 0.0001: 99, 0.00025: 100, float("inf"): 100}
    run.check("histogram p50 interpolates inside its bucket", abs(histogram_quantile(0.5, b) - 2.5e-05) < 1e-12,
              f"{histogram_quantile(0.5, b)}")
    run.check("histogram p99 at a bucket bound", abs(histogram_quantile(0.99, b) - 1e-04) < 1e-12,
              f"{histogram_quantile(0.99, b)}")
    run.check("histogram: +Inf answers the highest finite bound",
              histogram_quantile(0.999, {0.01: 0, float("inf"): 10}) == 0.01, "")
    base = {"gen_busy": 0.5, "srv_busy": 0.5, "srv_cores": 1, "machine_busy": 0.5, "srv_cpus_busy": None,
            "gen_cpus_busy": None}
    cases = [({"gen_busy": 0.95}, "client"), ({"srv_busy": 0.97}, "server"),
             ({"gen_busy": 0.92, "srv_busy": 0.99}, "client+server"), ({"machine_busy": 0.95}, "machine"),
             ({"srv_cpus_busy": 0.93}, "machine"), ({}, "-"), ({"srv_busy": 1.5, "srv_cores": 2}, "-")]
    for change, want in cases:
        got = classify(dict(base, **change))
        run.check(f"client-bound rule: {change} -> {want}", got == want, f"got {got}")
    wrk = ('WRKJSON {"requests":1000,"duration_us":2000000,"connect":0,"read":1,"write":0,"status":10,'
           '"timeout":0,"p50":100,"p90":200,"p99":900,"p999":2000,"max":3000}')
    w = parse_wrk(wrk)
    run.check("wrk summary parsed", w["requests"] == 1000 and w["statuses"] == {200: 990, 0: 10}
              and w["errors"] == {"read": 1} and w["p99"] == 0.9, str(w))
    h2 = ("finished in 2.00s, 224504.00 req/s, 14.59MB/s\nrequests: 449008 total, 449072 started, 449008 done, "
          "449000 succeeded, 8 failed, 0 errored, 0 timeout\nstatus codes: 449000 2xx, 0 3xx, 8 4xx, 0 5xx\n"
          "time for request:       92us      3.20ms       264us        74us    97.30%")
    h = parse_h2load(h2)
    run.check("h2load summary parsed", h["requests"] == 449008 and h["statuses"] == {200: 449000, 400: 8}
              and not h["errors"] and abs(h["mean"] - 0.264) < 1e-9 and h["max"] == 3.2, str(h))
    m = merge_client([{"requests": 100, "statuses": {200: 100}, "errors": {}, "seconds": 1, "p99": 1.0},
                      {"requests": 300, "statuses": {200: 299, 500: 1}, "errors": {"x": 2}, "seconds": 1.1,
                       "p99": 2.0}])
    run.check("several generator processes merge", m["requests"] == 400 and m["statuses"] == {200: 399, 500: 1}
              and m["errors"] == {"x": 2} and abs(m["p99"] - 1.75) < 1e-9 and m["seconds"] == 1.1, str(m))
    pts = [(n, float(usl.usl(n, 1000.0, 0.05, 0.002))) for n in (1, 2, 4, 8, 16)]
    f = usl.fit(pts)
    run.check("USL fit recovers known coefficients", abs(f["lam"] - 1000) < 1 and abs(f["sigma"] - 0.05) < 1e-3
              and abs(f["kappa"] - 0.002) < 1e-4, usl.describe(f, "unit"))
    f2 = usl.fit([(1, 100.0), (2, 150.0)])
    run.check("USL with two N: κ fixed at 0, σ exact", f2["kappa_fixed"] and abs(f2["sigma"] - 1 / 3) < 1e-3,
              usl.describe(f2, "unit"))
    return "selftest: " + ("passed" if not run.failed else "FAILED")


# ---------------------------------------------------------------- main

FUNCS = {"selftest": selftest, "sweep": sweep, "latency": latency, "workers": workers, "replicas": replicas, "failover": failover,
         "connections": connections, "soak": soak, "mixed": mixed, "k6": k6}


def smoke_args(args):
    """Every scenario in a few seconds, for CI: asserts failover and soak outcomes."""
    args.duration = 1.5
    args.repeat = 1
    args.concurrency = [1, 64]
    args.h2_concurrency = [4]
    args.h2_streams = [1, 16]
    args.rates = [25, 75]
    args.max_workers = min(2, CPUS)
    args.max_replicas = min(2, max(1, CPUS))
    args.idle = 1000
    args.soak = 25
    args.soak_window = 10
    args.failover_seconds = 6
    args.shutdown_delay = "2s"
    args.k6_rate = 200
    args.no_failover = False
    return ["selftest", "sweep", "latency", "workers", "replicas", "connections", "soak", "mixed", "k6"]


def main():
    ap = argparse.ArgumentParser(prog="loadtest/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    ap.add_argument("scenario", choices=SCENARIOS + ["smoke", "all"])
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "greeting-service"),
                    help="service binary (default target/release/greeting-service, built by loadtest/run)")
    ap.add_argument("--out", help="output folder (default loadtest/results; smoke: a new temporary folder)")
    ap.add_argument("--duration", type=float, default=10, help="seconds per measurement (default 10)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per point, for the spread (default 1; 3 for results)")
    ap.add_argument("--client", choices=["wrk", "oha"], default="wrk",
                    help="closed-loop HTTP/1.1 generator (default wrk: the cheaper one per request)")
    ap.add_argument("--h2-client", choices=["oha", "h2load"], default="oha",
                    help="HTTP/2 generator (oha: percentiles; h2load: cheaper, mean/max only)")
    ap.add_argument("--gen-threads", type=int, help="generator threads (default: the generator's CPUs)")
    ap.add_argument("--gen-procs", type=int, help="oha processes per measurement (default 1)")
    ap.add_argument("--pin", default="auto",
                    help="CPU pinning: auto (per scenario, see README), none, or SERVER/GENERATOR CPU lists "
                         "like 0/1")
    ap.add_argument("--server-env", action="append", metavar="VAR=VALUE", help="extra service environment")
    ap.add_argument("--concurrency", type=ints, default=[1, 4, 16, 64, 256, 1024], help="sweep: HTTP/1.1 connections")
    ap.add_argument("--h2-concurrency", type=ints, default=[1, 4, 16, 64], help="sweep: h2c connections")
    ap.add_argument("--h2-streams", type=ints, default=[1, 8, 32], help="sweep: h2c streams per connection")
    ap.add_argument("--rates", type=ints, default=[25, 50, 80, 95], help="latency: %% of saturation")
    ap.add_argument("--max-workers", type=int, default=CPUS, help="workers: WORKERS = 1..N (default CPUs)")
    ap.add_argument("--runtimes", type=lambda s: s.split(","), default=["per-core"],
                    help="workers: RUNTIME values (per-core,multi-thread)")
    ap.add_argument("--criterion-dir", default=str(ROOT / "target" / "criterion"),
                    help="workers: where `cargo bench --bench contention` left its figures")
    ap.add_argument("--max-replicas", type=int, default=max(2, CPUS), help="replicas: 1..N")
    ap.add_argument("--scale-conns", type=int, default=128, help="workers/replicas: connections")
    ap.add_argument("--haproxy-cfg", default=str(cluster.SHIPPED), help="HAProxy config (default: the shipped one)")
    ap.add_argument("--no-failover", action="store_true", help="replicas: skip the failover runs")
    ap.add_argument("--failover-replicas", type=int, default=2)
    ap.add_argument("--failover-seconds", type=float, default=15)
    ap.add_argument("--failover-rate", type=int, default=20000, help="failover: requests/s (open loop)")
    ap.add_argument("--failover-conns", type=int, default=32)
    ap.add_argument("--shutdown-delay", default="3s", help="failover SIGTERM: the replicas' SHUTDOWN_DELAY")
    ap.add_argument("--idle", type=int, default=10_000, help="connections: idle connections")
    ap.add_argument("--soak", type=float, default=300, help="soak length in seconds (any length)")
    ap.add_argument("--soak-rate", type=int, help="soak requests/s (default: 50 %% of a 3 s oha probe)")
    ap.add_argument("--soak-conns", type=int, default=64)
    ap.add_argument("--soak-window", type=float, default=10, help="soak: seconds per window / progress line")
    ap.add_argument("--soak-rss-growth-kib", type=int, default=4096, help="soak: allowed RSS growth")
    ap.add_argument("--k6-rate", type=int, default=1000, help="k6 arrival rate per second")
    ap.add_argument("--k6-p99-ms", type=float, default=50)
    args = ap.parse_args()
    args.bin = str(Path(args.bin).resolve())
    if not Path(args.bin).exists():
        sys.exit(f"{args.bin} is missing: pass --bin PATH or run through loadtest/run, which builds it")
    if args.scenario == "smoke":
        names = smoke_args(args)
        out = Path(args.out or tempfile.mkdtemp(prefix="greeting-loadtest-smoke-"))
    else:
        names = ALL if args.scenario == "all" else [args.scenario]
        out = Path(args.out or ROOT / "loadtest" / "results")
    print(f"output: {out}", flush=True)
    failures, headlines = [], []
    t_start = time.time()
    for name in names:
        t0 = time.time()
        print(f"== {name}", flush=True)
        run = report.Run(out, name, args.bin, sys.argv[1:])
        try:
            headlines.append((name, FUNCS[name](args, run)))
        except Failure as e:
            run.check(f"{name} ran", False, str(e))
            headlines.append((name, f"{name}: FAILED: {e}"))
        run.data["seconds"] = time.time() - t0
        failures += run.finish()
        print(f"   {name}: {time.time() - t0:.0f} s", flush=True)
    if len(names) > 1:
        f = report.facts(args.bin, sys.argv[1:])
        lines = ["# Load-test results", "", report.facts_md(f), "",
                 f"Total time {time.time() - t_start:.0f} s.", "", "| scenario | headline |", "|---|---|"]
        lines += [f"| [{n}]({n}/summary.md) | {h} |" for n, h in headlines]
        lines += ["", "Failed checks: " + ("; ".join(failures) if failures else "none"), ""]
        (out / "README.md").write_text("\n".join(lines))
    print(f"\nall done in {time.time() - t_start:.0f} s; output: {out}")
    for n, h in headlines:
        print(f"  {h}")
    if failures:
        print("\nFAILED checks:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
