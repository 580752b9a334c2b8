#!/usr/bin/env python3
"""Where a server's user-space instructions per request go, grouped by crate; or,
with --walk, which of this service's own source files and functions run on every
request.

    perf/callgrind-crates.py NAME=COMMAND [NAME=COMMAND...] [--n1 2000] [--n2 12000] [-c 8]
    perf/callgrind-crates.py --walk project=target/release/greeting-service

Each COMMAND (a program and its arguments, no shell) reads PORT (and WORKERS=1) from its environment, like
perf/peers/callgrind.sh. For each server: two callgrind runs with N1 and N2 POST /greet
requests over C keep-alive connections (oha), the self cost of every source line
(read from callgrind's output file, `line_costs`), grouped by the crate whose source the
instructions came from (the source file, so inlined code counts where it was written;
the symbol's crate where the file is unknown; this service's own code by module), and (run N2 - run N1) / (N2 - N1), so start-up and shutdown cancel.
Prints a markdown table, one column per server, and with two or more servers the
difference of the first and the second.

--walk reads callgrind's own output (self cost per source line, inlined code at the
line it was written) and gives each line of src/ to the `fn` whose body holds it
(matched braces), so one-line helpers that the compiler inlined count as functions
too: the hot path as a reader walks it, measured rather than read off. A function
counts when its lines take at least --min instructions per request (default 1):
anything that runs once per request takes more. Code that runs by the clock rather
than per request (the watchdog's sweep, ten times a second) can show up too, with a
small figure, because the longer run lasts longer. Needs harness/ (`scripts/py
perf/callgrind-crates.py` installs it).
"""

import argparse
import collections
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request

from greeting_harness import free_port

BODY = b'{"name":"John"}'
# This repository's sources: instructions from them are this service's own code.
OURS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src") + "/"


def crate_of(symbol):
    """The crate a demangled symbol belongs to (its first path segment)."""
    s = symbol.strip()
    if s.startswith("0x"):
        return "unknown"
    # `<T as Trait>::f`, `<&T>::f`: the type's crate.
    # Dropping a value is the cost of its type: `core::ptr::drop_in_place<T>`.
    m = re.match(r"^core::ptr::drop_in_place<(.*)>$", s)
    if m:
        return crate_of(m.group(1))
    s = s.lstrip("<&*").replace("mut ", "").replace("dyn ", "")
    s = re.sub(r"^\(.*?\)\s*", "", s)
    head = re.split(r"::|<| as |\s|>", s, maxsplit=1)[0]
    # `<T as Trait>::f` with T a generic parameter: the trait's crate.
    if re.fullmatch(r"[A-Z]\w*", head) and " as " in s:
        return crate_of(s.split(" as ", 1)[1])
    if head == "greeting_service":
        # This service's own code, by module.
        parts = re.split(r"::", s)
        clean = [re.split(r"<|>| ", p)[0] for p in parts[1:]]
        depth = 2 if clean[0] in ("server", "domain", "telemetry", "json", "ids") and len(clean) > 2 else 1
        return "::".join([head] + clean[:depth]) if len(clean) > 1 else head
    if head in ("core", "alloc", "std"):
        return "core/alloc/std"
    if head.startswith(("mi_", "_mi_", "mi-", "mimalloc")):
        return "mimalloc"
    if "::" not in s:
        return "libc and other C"
    return head.replace("-", "_")


def crate_of_file(file):
    """The crate whose source the instructions came from (inlined code included),
    from the source file's path; None when the file is unknown."""
    m = re.search(r"/index\.crates\.io-[^/]+/([A-Za-z0-9_-]+?)-\d+\.\d+\.\d+[^/]*/", file)
    if m:
        name = m.group(1).replace("-", "_")
        return "mimalloc" if name == "libmimalloc_sys" else name
    if re.search(r"/library/(core|alloc|std)/", file):
        return "core/alloc/std"
    if file.startswith(OURS):
        m = re.match(r"((?:server|domain|telemetry|json|ids)/\w+|\w+)(?:\.rs|/)", file[len(OURS):])
        module = m.group(1).replace("/", "::") if m else "?"
        return "greeting_service::" + module.removesuffix("::mod")
    if "/src/" in file and "/registry/" not in file and "/rustc/" not in file:
        return "(another server's own code)"
    if file.startswith("./") or "/sysdeps/" in file:
        return "libc and other C"
    return None


def crate_costs(path):
    """Self instructions per crate from one callgrind output file."""
    totals = collections.Counter()
    for (file, function, _line), cost in line_costs(path).items():
        totals[crate_of_file(file) or crate_of(function)] += cost
    return totals


def line_costs(path):
    """Self instructions per (source file, function, line) from one callgrind
    output file, read directly (callgrind_annotate gives lines only beside the
    sources, and only per file). Handles the format's name compression (`(id)
    name`, then `(id)`; files and functions are numbered apart), relative positions
    (`+n`, `-n`, `*`) and inlined files (`fi=`/`fe=`: the file is where the code was
    written, the function the symbol it was inlined into); the cost line after
    `calls=` is the call's inclusive cost, not self cost, and is skipped."""
    names, costs = {"file": {}, "fn": {}}, collections.Counter()
    fl = file = function = None
    line = 0
    skip_next = False

    def name(kind, value):
        m = re.match(r"^\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), "?")

    with open(path) as f:
        for raw in f:
            raw = raw.rstrip("\n")
            if not raw:
                continue
            c = raw[0]
            if c.isdigit() or c in "+-*":
                pos, _, rest = raw.partition(" ")
                if pos == "*":
                    pass
                elif pos[0] in "+-":
                    line += int(pos)
                else:
                    line = int(pos)
                if skip_next:
                    skip_next = False
                elif rest:
                    costs[(file, function, line)] += int(rest.split()[0])
                continue
            key, _, value = raw.partition("=")
            if key == "fl":
                fl = file = name("file", value)
            elif key in ("fi", "fe"):
                file = name("file", value)
            elif key == "fn":
                file, function = fl, name("fn", value)
            elif key in ("cfi", "cfl"):
                name("file", value)  # registers the name; the caller's file is unchanged
            elif key == "cfn":
                name("fn", value)
            elif key == "calls":
                skip_next = True
    return costs


def code_only(text):
    """`text` with comments, strings and char literals blanked (same length, newlines
    kept), so that braces and `fn` in them count for nothing. Handles `//` and
    nested `/* */` comments, `"..."` with escapes, raw strings (`r#"..."#`, `br"..."`)
    and char literals (a lifetime such as `'a` is left alone)."""
    out, i, n = list(text), 0, len(text)

    def blank(start, end):
        for k in range(start, min(end, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif (m := re.match(r'b?r(#*)"', text[i:i + 40])) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = '"' + m.group(1)
            end = text.find(close, i + m.end())
            end = n if end < 0 else end + len(close)
            blank(i, end)
            i = end
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif text[i] == "'" and (m := re.match(r"'(\\(u\{[0-9a-fA-F]+\}|x..|.)|[^\\'])'", text[i:i + 12])):
            blank(i, i + m.end())
            i += m.end()
        else:
            i += 1
    return "".join(out)


def functions_of(path):
    """(first line, last line, name) of every `fn` in a Rust source file, by its
    matched braces (comments, strings and chars skipped). The file is read from the
    working tree, which must be the commit the measured binary was built from."""
    text = code_only(open(path).read())
    spans = []
    for m in re.finditer(r"\bfn\s+(\w+)", text):
        # The body's `{`, or the `;` of a declaration without one (a trait's),
        # outside the signature's brackets (`-> [u8; 16]`).
        i, nest = m.end(), 0
        while i < len(text) and not (nest == 0 and text[i] in "{;"):
            nest += (text[i] in "([") - (text[i] in ")]")
            i += 1
        if i >= len(text) or text[i] == ";":
            continue
        depth, j = 0, i
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        first = text.count("\n", 0, m.start()) + 1
        spans.append((first, text.count("\n", 0, j) + 1, m.group(1)))
    return spans


def walk(per_line, minimum):
    """This service's own functions per request, by file: {file: {fn: instr}}."""
    by_file = collections.defaultdict(collections.Counter)
    for (file, _function, line), cost in per_line.items():
        if file and file.startswith(OURS):
            by_file[file[len(OURS):]][line] += cost
    result = {}
    for file, lines in by_file.items():
        spans = functions_of(OURS + file)
        fns = collections.Counter()
        for line, cost in lines.items():
            # The innermost fn holding the line (a nested fn's span is inside its parent's).
            inside = [s for s in spans if s[0] <= line <= s[1]]
            label = min(inside, key=lambda s: s[1] - s[0]) if inside else None
            if label:
                fns[f"{label[2]} (line {label[0]})"] += cost
            elif line == 0:
                # No line: code the compiler made (moves, drops, state machines).
                fns["(no line: compiler glue)"] += cost
            else:
                fns["(outside any fn: derives, statics)"] += cost
        fns = {k: v for k, v in fns.items() if v >= minimum}
        if fns:
            result[file] = fns
    return result


def print_walk(name, result):
    files = sorted(result, key=lambda f: -sum(result[f].values()))
    count = sum(1 for v in result.values() for fn in v if not fn.startswith("("))
    print(f"{name}: {len(files)} files and {count} functions of src/ per request")
    print()
    print("| file | function (where it starts) | instructions per request |")
    print("|---|---|---:|")
    for file in files:
        for fn, cost in sorted(result[file].items(), key=lambda kv: -kv[1]):
            print(f"| `{file}` | `{fn}` | {cost:,.1f} |")
    print(f"| **total** | | **{sum(sum(v.values()) for v in result.values()):,.0f}** |")


def run_once(cmd, n, conns, tmp, analyse):
    port = free_port()
    env = dict(os.environ, PORT=str(port), WORKERS="1", HOST="127.0.0.1", LOG_LEVEL="error")
    out = os.path.join(tmp, "cg.%p")
    proc = subprocess.Popen(
        # Not through a shell: valgrind would follow it, not the server it execs.
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *shlex.split(cmd)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/greet"
    for _ in range(300):
        try:
            req = urllib.request.Request(url, BODY, {"content-type": "application/json"})
            urllib.request.urlopen(req, timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        sys.exit(f"{cmd}: not serving on {port}")
    subprocess.run(
        ["oha", "--no-tui", "-n", str(n), "-c", str(conns), "-m", "POST",
         "-H", "content-type: application/json", "-d", BODY.decode(), url],
        check=True, stdout=subprocess.DEVNULL,
    )
    proc.send_signal(2)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    files = [os.path.join(tmp, f) for f in os.listdir(tmp) if f.startswith("cg.")]
    totals = collections.Counter()
    for f in files:
        totals.update(analyse(f))
        os.remove(f)
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=12000)
    ap.add_argument("-c", type=int, default=8, dest="conns")
    ap.add_argument("--walk", action="store_true",
                    help="this service's own files and functions per request, not crates")
    ap.add_argument("--min", type=float, default=1.0,
                    help="with --walk: instructions per request a function needs to count")
    args = ap.parse_args()
    analyse = line_costs if args.walk else crate_costs
    per_request = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.servers:
            name, cmd = spec.split("=", 1)
            print(f"{name}: {args.n1} then {args.n2} requests under callgrind", file=sys.stderr)
            a = run_once(cmd, args.n1, args.conns, tmp, analyse)
            b = run_once(cmd, args.n2, args.conns, tmp, analyse)
            span = args.n2 - args.n1
            per_request[name] = {k: (b[k] - a[k]) / span for k in set(a) | set(b)}
    if args.walk:
        for name, per_line in per_request.items():
            print_walk(name, walk(per_line, args.min))
        return
    names = list(per_request)
    crates = sorted(
        {c for v in per_request.values() for c in v},
        key=lambda c: -max(abs(v.get(c, 0)) for v in per_request.values()),
    )
    diff = len(names) >= 2
    head = "| crate | " + " | ".join(names) + (f" | {names[0]} - {names[1]} |" if diff else " |")
    print(head)
    print("|---" + "|---:" * (len(names) + diff) + "|")
    for c in crates:
        vals = [per_request[n].get(c, 0) for n in names]
        if max(abs(v) for v in vals) < 5:
            continue
        row = f"| {c} | " + " | ".join(f"{v:,.0f}" for v in vals)
        if diff:
            row += f" | {vals[0] - vals[1]:+,.0f}"
        print(row + " |")
    totals = [sum(per_request[n].values()) for n in names]
    row = "| **total** | " + " | ".join(f"**{t:,.0f}**" for t in totals)
    if diff:
        row += f" | **{totals[0] - totals[1]:+,.0f}**"
    print(row + " |")


if __name__ == "__main__":
    main()
