#!/usr/bin/env python3
"""Helper of bench/deploy.sh (stdlib only). Subcommands:

  gen OUT          write the benchmark's Python trees under OUT:
                     dists/hb_pkgNN/hb_pkgNN/   20 small pure-Python packages
                                                (mkpex.py --dist directories)
                     projects/hb_pkgNN/         the same plus pyproject.toml
                                                (wheels for the real pex tool)
                     flat/                      all 20 in one plain directory
                                                (the bare interpreter's PYTHONPATH)
                     entry/hb_entry.py          imports all 20, prints one line
                     fastcode/fastapp/          ~1 MB user code for the fast path;
                                                fastapp/_rev.py is rewritten per
                                                deploy so the sha256 changes
  spec ...         the variants of (2), the native one read from a live
                   revision's /proc/PID/{cmdline,environ}
  deploys ...      deploy through hearth's control socket REPS times and time,
                   on the client's CLOCK_MONOTONIC: the request, the `loading`
                   event (process spawned), the first stdout line of the user
                   code (as the code stamped it, and as `logs` follow delivered
                   it) and `ready`; keeps each revision's timings_ms
  launch SPEC      start each variant of SPEC round-robin (interleaved, so load
                   drift hits all alike) and time spawn -> first stdout line and
                   spawn -> exit; then the same commands under hyperfine
  report           print the tables

The user code stamps its first line with time.monotonic() (CLOCK_MONOTONIC,
shared by every process on the machine), so "printed" times need no pipe or
relay; "received" times add hearth's output capture and the `logs` relay.
"""

import argparse
import hashlib
import json
import os
import random
import select
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime

N_PKGS = 20
FAST_MODULES = 100
FAST_BLOB = 850 * 1024  # incompressible asset, so the pex is ~1 MB


# --------------------------------------------------------------------- gen

def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode) as f:
        f.write(text)


def _pkg_files(i):
    """A small package: four modules, plain definitions, no stdlib imports."""
    name = "hb_pkg%02d" % i
    init = (
        '"""Benchmark package %d."""\n'
        "from .core import score, Thing\n"
        "from . import util, consts\n"
        "__version__ = '1.0'\n" % i
    )
    core = ['"""Core of %s."""\n' % name, "from .consts import TABLE, FACTOR\n",
            "from .util import clamp, fold\n\n"]
    core.append("class Thing:\n    def __init__(self, n):\n        self.n = n\n"
                "    def value(self):\n        return clamp(self.n * FACTOR, 0, 10 ** 6)\n\n")
    for k in range(25):
        core.append("def f%02d(x, y=%d):\n    if x > y:\n        return fold([x, y, %d])\n"
                    "    return TABLE[(x + %d) %% len(TABLE)]\n\n" % (k, k, k, k))
    core.append("def score(n):\n    return sum(Thing(n + k).value() for k in range(3)) + f00(n)\n")
    util = ('"""Helpers of %s."""\n\n' % name
            + "def clamp(v, lo, hi):\n    return lo if v < lo else hi if v > hi else v\n\n"
            + "def fold(items):\n    acc = 0\n    for it in items:\n        acc = (acc * 31 + it) % 1000003\n    return acc\n\n"
            + "".join("def helper%02d(s):\n    return s[::-1] + %r\n\n" % (k, "h%d" % k) for k in range(20)))
    consts = ('"""Constants of %s."""\n' % name + "FACTOR = %d\n" % (i + 1)
              + "TABLE = [\n" + "".join("    %d,\n" % ((k * 7919 + i) % 997) for k in range(200)) + "]\n"
              + "NAMES = {\n" + "".join("    %r: %d,\n" % ("n%03d" % k, k) for k in range(100)) + "}\n")
    return name, {"__init__.py": init, "core.py": "".join(core), "util.py": util, "consts.py": consts}


def cmd_gen(args):
    out = args.out
    if os.path.exists(out):
        shutil.rmtree(out)
    names = []
    for i in range(1, N_PKGS + 1):
        name, files = _pkg_files(i)
        names.append(name)
        for rel, text in files.items():
            _write(os.path.join(out, "dists", name, name, rel), text)
            _write(os.path.join(out, "projects", name, name, rel), text)
            _write(os.path.join(out, "flat", name, rel), text)
        _write(os.path.join(out, "projects", name, "pyproject.toml"),
               '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
               '[project]\nname = "%s"\nversion = "1.0"\n\n[tool.setuptools]\npackages = ["%s"]\n'
               % (name.replace("_", "-"), name))
    entry = ["import sys\nimport time\n"]
    entry += ["import %s\n" % n for n in names]
    entry.append("_total = %s\n" % " + ".join("%s.score(3)" % n for n in names))
    entry.append('sys.stdout.write("hb_entry first-line %.6f %d\\n" % (time.monotonic(), _total))\n'
                 "sys.stdout.flush()\n"
                 'if "--hold" in sys.argv[1:]:  # under hearth: stay up until stopped\n'
                 "    while True:\n        time.sleep(3600)\n")
    _write(os.path.join(out, "entry", "hb_entry.py"), "".join(entry))

    # Fast-path user code: the first thing it does is print, so the time to
    # that line is hearth + interpreter start + boot script, not user imports.
    fast = os.path.join(out, "fastcode", "fastapp")
    _write(os.path.join(fast, "__init__.py"), "")
    _write(os.path.join(fast, "main.py"),
           "import sys\nimport time\n"
           'sys.stdout.write("fastapp first-line %.6f\\n" % time.monotonic())\n'
           "sys.stdout.flush()\n"
           "while True:\n    time.sleep(3600)\n")
    _write(os.path.join(fast, "_rev.py"), "REV = 'initial'\n")
    rng = random.Random(7)
    words = ("value result data config request response handler client server buffer index "
             "offset length count items keys parse render encode decode validate").split()
    for m in range(FAST_MODULES):
        lines = ['"""Module %03d."""\n' % m]
        while sum(map(len, lines)) < 6000:
            w = [rng.choice(words) for _ in range(4)]
            lines.append("def %s_%s_%d(%s, %s):\n    return %s + %d\n\n"
                         % (w[0], w[1], rng.randint(0, 9999), w[2], w[3], w[2], rng.randint(0, 99)))
        _write(os.path.join(fast, "mods", "m%03d.py" % m), "".join(lines))
    _write(os.path.join(fast, "mods", "__init__.py"), "")
    _write(os.path.join(fast, "assets", "blob.bin"), rng.getrandbits(8 * FAST_BLOB).to_bytes(FAST_BLOB, "little"))
    print(" ".join(names))


# ----------------------------------------------------------------- deploys

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_ts(ts):
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


class Conn:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1

    def send(self, method, params):
        rid = self.next_id
        self.next_id += 1
        self.sock.sendall(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                      "params": params}).encode() + b"\n")
        return rid

    def read(self, timeout):
        """Next message and its arrival time (monotonic), or (None, None)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None, None
            data = self.sock.recv(1 << 20)
            if not data:
                raise SystemExit("deploy_bench: hearth closed the connection")
            self.buf += data
        now = time.monotonic()
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line), now

    def call(self, method, params, timeout=30):
        rid = self.send(method, params)
        while True:
            msg, _ = self.read(timeout)
            if msg is None:
                raise SystemExit("deploy_bench: %s: no reply" % method)
            if msg.get("id") == rid:
                if "error" in msg:
                    raise SystemExit("deploy_bench: %s: %s" % (method, msg["error"]))
                return msg["result"]

    def close(self):
        self.sock.close()


def live_revisions(sock_path, location):
    c = Conn(sock_path)
    try:
        st = c.call("status", {})
    finally:
        c.close()
    for loc in st["locations"]:
        if loc["location"] == location:
            return [r for r in loc["revisions"] if r["state"] not in ("stopped", "failed")], loc
    return [], None


def one_deploy(args, sock_path, deps, source):
    c = Conn(sock_path)
    c.call("events.subscribe", {"location": args.location})
    params = {"location": args.location,
              "deps": {"path": deps, "sha256": sha256_file(deps)},
              "source": {"path": source, "sha256": sha256_file(source)},
              "min_uptime_s": args.min_uptime}
    if args.module:
        params["entry"] = {"module": args.module, "args": args.arg}
    t0 = time.monotonic()
    deploy_id = c.send("deploy", params)
    rec = {"source_bytes": os.path.getsize(source)}
    rev_id = logs_id = None
    events = {}

    def first_line(text, arrived):
        if "first-line" in text and "line_recv" not in rec:
            rec["line_recv"] = (arrived - t0) * 1000
            rec["line_printed"] = (float(text.split()[2]) - t0) * 1000

    while "ready" not in events or "line_recv" not in rec:
        msg, arrived = c.read(120)
        if msg is None:
            raise SystemExit("deploy_bench: timed out waiting for %s (seen %s)" % (rev_id, sorted(events)))
        if msg.get("id") == deploy_id:
            if "error" in msg:
                raise SystemExit("deploy_bench: deploy: %s" % msg["error"])
            rev_id = msg["result"]["id"]
            rec["reply"] = (arrived - t0) * 1000
            logs_id = c.send("logs", {"location": args.location, "id": rev_id, "follow": True, "tail": 100})
        elif logs_id is not None and msg.get("id") == logs_id:
            for line in msg["result"]["lines"]:
                if line["stream"] == "stdout":
                    first_line(line["text"], arrived)
        elif msg.get("method") == "event":
            p = msg["params"]
            if rev_id is not None and p["id"] != rev_id:
                continue
            events[p["state"]] = (arrived, p)
            if p["state"] == "failed":
                raise SystemExit("deploy_bench: %s failed: %s %s\n%s" % (
                    p["id"], p.get("reason"), p.get("message"),
                    "\n".join(p["revision"].get("stderr_tail", []))))
        elif msg.get("method") == "log":
            p = msg["params"]
            if p["id"] == rev_id and p["stream"] == "stdout":
                first_line(p["text"], arrived)
    c.close()
    arrived, p = events["loading"]
    rec["loading"] = (arrived - t0) * 1000
    rec["server_loading"] = (parse_ts(p["ts"]) - parse_ts(p["revision"]["created_at"])) * 1000
    rec["ready"] = (events["ready"][0] - t0) * 1000
    rev = events["ready"][1]["revision"]
    rec["timings_ms"] = rev["timings_ms"]
    rec["cache_hit"] = {"deps": rev["deps"]["cache_hit"], "source": rev["source"]["cache_hit"]}
    rec["id"] = rev_id
    # Outside the timed part: let blue/green retire the previous revision so
    # it does not run during the next measurement.
    deadline = time.monotonic() + 30
    while len(live_revisions(sock_path, args.location)[0]) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    return rec


def cmd_deploys(args):
    """Each rep deploys once to every target (one hearth each), alternating
    the order, so load drift on a shared machine hits all targets alike."""
    targets = [t.split("=", 1) for t in args.target]
    results = {label: [] for label, _ in targets}
    for k in range(args.warmup + args.reps):
        source = args.source
        if args.code:
            # A new source.pex: same code, one file changed, new sha256.
            with open(os.path.join(args.code, "fastapp", "_rev.py"), "w") as f:
                f.write("REV = %r\n" % ("%d-%d-%s" % (os.getpid(), k, time.time_ns())))
            source = os.path.join(args.workdir, "source-%s.pex" % args.location)
            subprocess.run([sys.executable, args.mkpex, "source", source, "--code", args.code,
                            "--entry", args.entry], check=True)
        for label, sock_path in (targets if k % 2 == 0 else targets[::-1]):
            rec = one_deploy(args, sock_path, args.deps, source)
            rec["warmup"] = k < args.warmup
            results[label].append(rec)
            print("  %-8s %-9s %s %s: loading %.1f ms, first line printed %.1f ms, received %.1f ms, %s" % (
                label, args.location, "warm-up" if rec["warmup"] else "rep %2d" % (k - args.warmup + 1),
                rec["id"], rec["loading"], rec["line_printed"], rec["line_recv"],
                " ".join("%s=%.1f" % (ph, ms) for ph, ms in rec["timings_ms"].items() if ph != "loading")),
                file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


# -------------------------------------------------------------------- spec

def cmd_spec(args):
    """The variants of (2), from the running native revision's own process."""
    with open("/proc/%d/cmdline" % args.pid, "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
    with open("/proc/%d/environ" % args.pid, "rb") as f:
        env = dict(kv.decode().split("=", 1) for kv in f.read().split(b"\0")[:-1])
    if argv[-1] == "--hold":
        argv = argv[:-1]  # the only difference: exit after the line
    py = argv[0]
    gen = args.gen
    base_env = {"PATH": env["PATH"], "HOME": env["HOME"], "LANG": env["LANG"]}
    dists = sorted(os.path.join(gen, "dists", d) for d in os.listdir(os.path.join(gen, "dists")))
    variants = [
        {"name": "baseline", "argv": [py, "-s", "-c", 'import sys; sys.stdout.write("first-line\\n")'],
         "env": base_env},
        {"name": "(a) hearth native (boot script)", "argv": argv, "env": env},
        {"name": "(b) bare, flat dir on PYTHONPATH", "argv": [py, "-s", "-m", "hb_entry"],
         "env": dict(base_env, PYTHONPATH="%s:%s" % (os.path.join(gen, "flat"), os.path.join(gen, "entry")))},
        {"name": "(b') bare, 20 dirs on PYTHONPATH", "argv": [py, "-s", "-m", "hb_entry"],
         "env": dict(base_env, PYTHONPATH=":".join(dists + [os.path.join(gen, "entry")]))},
    ]
    if args.pex_deps:
        variants.append({"name": "(c) pex runtime (real pex files)", "argv": [py, args.pex_source],
                         "env": dict(base_env, PEX_PATH=args.pex_deps, PEX_ROOT=args.pex_root)})
    for v in variants:
        v["cwd"] = args.cwd
    with open(args.out, "w") as f:
        json.dump({"python": py, "variants": variants}, f, indent=1)


# ------------------------------------------------------------------ launch

def site_cost(v):
    """Median over 5 runs of `-X importtime` of variant v: the cumulative time
    of `site` (which runs the .pth files of site-packages: every variant pays
    it) and its most expensive direct child."""
    runs = []
    for _ in range(5):
        p = subprocess.run([v["argv"][0], "-X", "importtime"] + v["argv"][1:], env=v["env"], cwd=v["cwd"],
                           capture_output=True, text=True, timeout=120)
        site, child, site_child = 0, ("", 0), ("", 0)
        for line in p.stderr.splitlines():
            parts = line.split("|")
            if len(parts) != 3 or not parts[0].startswith("import time:") or "cumulative" in parts[1]:
                continue
            cum, name = int(parts[1]), parts[2]
            depth = (len(name) - len(name.lstrip())) // 2
            if depth == 0 and name.strip() == "site":
                site, site_child = cum, child
            elif depth == 1 and cum > child[1]:
                child = (name.strip(), cum)
            elif depth == 0:
                child = ("", 0)  # children print before their parent: reset per top-level module
        runs.append((site, site_child))
    runs.sort()
    site, child = runs[len(runs) // 2]
    return {"site_ms": site / 1000, "child": child[0], "child_ms": child[1] / 1000}


def cmd_launch(args):
    with open(args.spec) as f:
        spec = json.load(f)
    variants = spec["variants"]
    for v in variants:  # check each works, and prints its line, before timing
        p = subprocess.run(v["argv"], env=v["env"], cwd=v["cwd"], capture_output=True, text=True, timeout=120)
        if p.returncode != 0 or "first-line" not in p.stdout:
            raise SystemExit("deploy_bench: variant %s failed (%d):\n%s%s" % (v["name"], p.returncode, p.stdout, p.stderr))
    times = {v["name"]: {"line": [], "exit": []} for v in variants}
    for r in range(args.warmup + args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for v in order:
            t0 = time.monotonic()
            p = subprocess.Popen(v["argv"], env=v["env"], cwd=v["cwd"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            p.stdout.readline()
            t1 = time.monotonic()
            p.stdout.read()
            p.wait()
            t2 = time.monotonic()
            if r >= args.warmup:
                times[v["name"]]["line"].append((t1 - t0) * 1000)
                times[v["name"]]["exit"].append((t2 - t0) * 1000)
    out = {"runner": times, "hyperfine": None, "site": site_cost(variants[0]), "variants": [{k: v[k] for k in ("name", "argv", "env", "cwd")} for v in variants]}
    if args.hyperfine:
        cmd = [args.hyperfine, "-N", "--style", "none", "--warmup", str(args.hf_warmup),
               "--runs", str(args.hf_runs), "--export-json", args.out + ".hyperfine.json"]
        for v in variants:
            words = ["/usr/bin/env", "-i"] + ["%s=%s" % kv for kv in sorted(v["env"].items())] + v["argv"]
            cmd += ["-n", v["name"], " ".join(shlex.quote(w) for w in words)]
        cwd = variants[0]["cwd"]  # hyperfine has one working directory for all
        if any(v["cwd"] != cwd for v in variants):
            raise SystemExit("deploy_bench: hyperfine needs one cwd for all variants")
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        with open(args.out + ".hyperfine.json") as f:
            out["hyperfine"] = {r["command"]: [t * 1000 for t in r["times"]] for r in json.load(f)["results"]}
        out["hyperfine_cmd"] = cmd
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


# ------------------------------------------------------------------ report

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def q(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def cmd_report(args):
    fast_all = json.load(open(args.fast))
    fast = [r for r in fast_all["disk"] if not r["warmup"]]
    e2e = [r for r in json.load(open(args.e2e))["disk"] if not r["warmup"]]
    launch = json.load(open(args.launch))
    out = []
    w = out.append

    def row(label, xs, extra=""):
        w("  %-52s %8.1f %8.1f %8.1f %s" % (label, med(xs), q(xs, 0.25), q(xs, 0.75), extra))

    hdr = "  %-52s %8s %8s %8s" % ("", "median", "p25", "p75")
    w("")
    entries = ""
    if args.source_pex:
        import zipfile
        with zipfile.ZipFile(args.source_pex) as z:
            entries = ", %d zip entries" % len(z.infolist())
    w("(1) Fast path: deps.pex (20 dists) in the store, a new %.2f MB source.pex%s per deploy"
      % (med([r["source_bytes"] for r in fast]) / 1e6, entries))
    w("    (%d deploys; times from the client's `deploy` send, ms)" % len(fast))
    w(hdr)
    row("deploy sent -> reply (revision id)", [r["reply"] for r in fast])
    row("deploy sent -> `loading` event received (spawned)", [r["loading"] for r in fast],
        "aim <= 30: %s" % ("met" if med([r["loading"] for r in fast]) <= 30 else "NOT met"))
    row("  hearth's own clock: created_at -> loading ts (1 ms)", [r["server_loading"] for r in fast])
    for ph in ("pending", "fetching", "extracting", "starting"):
        row("    phase %s (timings_ms)" % ph, [r["timings_ms"].get(ph, float("nan")) for r in fast])
    row("    client/socket/event delivery (rest of loading)",
        [r["loading"] - sum(r["timings_ms"].get(p, 0) for p in ("pending", "fetching", "extracting", "starting"))
         for r in fast])
    row("deploy sent -> first line printed (user code's clock)", [r["line_printed"] for r in fast],
        "aim <= 30: %s" % ("met" if med([r["line_printed"] for r in fast]) <= 30 else "NOT met"))
    row("  of which spawn -> first line (interpreter + boot)",
        [r["line_printed"] - r["loading"] for r in fast])
    row("deploy sent -> first line received (logs follow)", [r["line_recv"] for r in fast])
    row("deploy sent -> ready (min_uptime_s %.1f)" % args.min_uptime, [r["ready"] for r in fast])
    hits = sorted(set("deps %s / source %s" % (r["cache_hit"]["deps"], r["cache_hit"]["source"]) for r in fast))
    w("  cache_hit: %s" % ", ".join(hits))
    if "tmpfs" in fast_all:
        ft = [r for r in fast_all["tmpfs"] if not r["warmup"]]
        w("  the same, interleaved, with a second hearth whose state dir is on tmpfs (%d deploys):" % len(ft))
        row("deploy sent -> `loading` event received", [r["loading"] for r in ft],
            "aim <= 30: %s" % ("met" if med([r["loading"] for r in ft]) <= 30 else "NOT met"))
        for ph in ("fetching", "extracting", "starting"):
            row("    phase %s (timings_ms)" % ph, [r["timings_ms"].get(ph, float("nan")) for r in ft])
        row("deploy sent -> first line printed", [r["line_printed"] for r in ft])
    cold = json.load(open(args.cold))["disk"][0]
    w("  for contrast, the first (cold) deploy of the 20-package deps: loading %.1f ms, first line %.1f ms; %s"
      % (cold["loading"], cold["line_printed"],
         " ".join("%s %.1f" % kv for kv in cold["timings_ms"].items() if kv[0] != "loading")))

    names = [v["name"] for v in launch["variants"]]
    rl = {n: launch["runner"][n]["line"] for n in names}
    rx = {n: launch["runner"][n]["exit"] for n in names}
    hf = launch["hyperfine"] or {}
    base = "baseline"
    w("")
    w("(2) Launch of an entry importing %d small packages (round-robin runner: %d rounds; hyperfine: %d runs; medians, ms)"
      % (N_PKGS, len(rl[base]), len(hf.get(base, []))))
    w("  %-40s %9s %9s %9s %8s %9s %8s" % ("variant", "1st line", "exit", "hyperfine", "x bare",
                                             "overhead", "ovh x"))
    bare = "(b) bare, flat dir on PYTHONPATH"
    native = "(a) hearth native (boot script)"
    for n in names:
        line = med(rl[n])
        hfm = med(hf[n]) if n in hf else float("nan")
        ovh = line - med(rl[base])
        ovh_native = med(rl[native]) - med(rl[base])
        w("  %-40s %9.1f %9.1f %9.1f %8.2f %9.1f %8.1f" % (
            n, line, med(rx[n]), hfm, line / med(rl[bare]), ovh,
            ovh / ovh_native if ovh_native > 0 else float("nan")))
    if not any(n.startswith("(c)") for n in names):
        w("  (c) pex runtime: SKIPPED, no pex tool (run with PEX_SRC=/tmp/pexsrc, see bench/deploy.sh)")
    w("  end-to-end through hearth (%d deploys, deps+source cached, same entry with --hold):" % len(e2e))
    w(hdr)
    row("deploy sent -> `loading` event received", [r["loading"] for r in e2e])
    row("deploy sent -> first line printed", [r["line_printed"] for r in e2e])
    row("  of which spawn -> first line", [r["line_printed"] - r["loading"] for r in e2e])
    row("deploy sent -> first line received (logs follow)", [r["line_recv"] for r in e2e])

    site = launch.get("site")
    if site:
        w("  interpreter start-up: `site` import %.1f ms (-X importtime of the baseline, median of 5; site runs"
          % site["site_ms"])
        w("  the .pth files of site-packages, whatever the variant); largest import inside it: %s %.1f ms"
          % (site["child"] or "-", site["child_ms"]))
    a, b, c0 = med(rl[native]), med(rl[bare]), med(rl[base])
    w("")
    w("Aims (first-line medians of the round-robin runner):")
    w("  native / bare = %.3f (aim <= 1.2: %s); native - bare = %+.1f ms" % (a / b, "met" if a / b <= 1.2 else "NOT met", a - b))
    pexn = [n for n in names if n.startswith("(c)")]
    if pexn:
        cc = med(rl[pexn[0]])
        ratio = (cc - c0) / (a - c0) if a > c0 else float("inf")
        w("  pex overhead / native overhead = (%.1f - %.1f) / (%.1f - %.1f) = %.1f (aim >= 10: %s)" % (
            cc, c0, a, c0, ratio, "met" if ratio >= 10 else "NOT met"))
        w("  same with hyperfine medians (start -> exit): %.1f" % (
            (med(hf[pexn[0]]) - med(hf[base])) / (med(hf[native]) - med(hf[base]))
            if hf and med(hf[native]) > med(hf[base]) else float("nan")))
    else:
        w("  pex overhead ratio: not measured ((c) skipped)")
    w("  overhead(X) = median(X) - median(baseline); baseline = the same interpreter, same `-s`,")
    w("  same clean environment (PATH, HOME, LANG), `-c` printing one line (both runner and hyperfine).")
    print("\n".join(out))


# -------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("gen")
    p.add_argument("out")
    p = sub.add_parser("deploys")
    p.add_argument("--target", action="append", required=True, metavar="LABEL=SOCKET",
                   help="a hearth to deploy to (repeatable: deploys alternate between them)")
    p.add_argument("--location", required=True)
    p.add_argument("--deps", required=True)
    p.add_argument("--source", help="the same source.pex every time")
    p.add_argument("--code", help="fastcode dir: a new source.pex per deploy")
    p.add_argument("--entry", default="fastapp.main")
    p.add_argument("--mkpex")
    p.add_argument("--workdir")
    p.add_argument("--module", help="entry.module (the protocol wants one with args)")
    p.add_argument("--arg", action="append", default=[])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--min-uptime", type=float, default=0.3)
    p.add_argument("--out", required=True)
    p = sub.add_parser("spec")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--gen", required=True)
    p.add_argument("--cwd", required=True)
    p.add_argument("--pex-deps")
    p.add_argument("--pex-source")
    p.add_argument("--pex-root")
    p.add_argument("--out", required=True)
    p = sub.add_parser("launch")
    p.add_argument("spec")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--hyperfine")
    p.add_argument("--hf-runs", type=int, default=30)
    p.add_argument("--hf-warmup", type=int, default=5)
    p.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--cold", required=True)
    p.add_argument("--source-pex")
    p.add_argument("--fast", required=True)
    p.add_argument("--e2e", required=True)
    p.add_argument("--launch", required=True)
    p.add_argument("--min-uptime", type=float, default=0.3)
    args = ap.parse_args()
    {"gen": cmd_gen, "spec": cmd_spec, "deploys": cmd_deploys, "launch": cmd_launch, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
