#!/usr/bin/env python3
"""Helper of bench/spawn_cost.sh and bench/noisy_neighbour.sh (stdlib only).

Subcommands:

  spawn --target NAME=SOCKET ... --deps P --source P --runs N [--warmup W]
        [--limits JSON] --stamp-dir DIR --out FILE
      Deploys the workload `hold` (tests/fixtures/workloads.py) to each target
      in turn, N rounds in an order that rotates (so drift hits every target alike), and
      times on CLOCK_REALTIME, from just before the deploy request is sent:
        exec   -> the time user code began (the workload stamps it first
                  thing into a file: interpreter start-up included)
        spawn  -> the `loading` event (hearth has spawned the process)
      and keeps hearth's own timings_ms["starting"] (cgroup creation,
      placement, fork/exec). Each revision is stopped before the next round.

  client --port P --requests N [--interval-us U] [--out FILE]
      One persistent TCP connection, N request/response round trips ("ok <n>"
      expected back), one every U us (0: back to back); writes JSON
      {lat_us: [...], failed: N}.

  noisy --socket S --deps P --source P --port P --requests N --interval-us U
        --rounds R --memory-mount DIR --parent PARENT --workdir DIR --out FILE
      The noisy-neighbour scenario (see bench/noisy_neighbour.sh).

  wakeup --seconds S
      The machine's own wakeup latency, for context: on every CPU at once, a
      SCHED_FIFO thread (priority 50) sleeps 200 us in a loop and records how
      late it wakes (cyclictest's method). Nothing else of the bench runs
      meanwhile. On a VM, idle vCPUs the host has descheduled wake late; that
      noise is in every condition of the noisy-neighbour table, "alone" too.

  report-spawn FILE / report-noisy FILE
      Print the tables.

All processes this starts are stopped by pid; revisions through hearth.
"""

import argparse
import ctypes
import hashlib
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone


# ------------------------------------------------------------------ rpc


class Rpc:
    """A JSON-RPC connection to hearth's control socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.next_id = 1

    def send(self, method, params):
        rid = self.next_id
        self.next_id += 1
        self.sock.sendall((json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                       "params": params}) + "\n").encode())
        return rid

    def call(self, method, params=None):
        rid = self.send(method, params or {})
        while True:
            msg = self.read()
            if msg.get("id") == rid:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg["result"]

    def read(self):
        raw = self.file.readline()
        if not raw:
            raise RuntimeError("hearth closed the connection")
        return json.loads(raw)

    def close(self):
        self.file.close()
        self.sock.close()


def artifact(path):
    with open(path, "rb") as f:
        return {"path": os.path.abspath(path), "sha256": hashlib.sha256(f.read()).hexdigest()}


def iso_to_epoch(ts):
    return datetime.strptime(ts.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def rotated(items, rnd):
    """`items` starting at a different one each round, so that drift over a
    round hits every item alike."""
    k = rnd % len(items)
    return items[k:] + items[:k]


def revision(status, rid):
    for loc in status["locations"]:
        for r in loc["revisions"]:
            if r["id"] == rid:
                return r
    return None


def wait_state(events, rid, states, timeout):
    """Reads events from `events` (an Rpc subscribed) until revision rid
    reaches one of `states`; returns (event params, arrival time)."""
    deadline = time.time() + timeout
    events.sock.settimeout(timeout)
    while time.time() < deadline:
        msg = events.read()
        now = time.time()
        if msg.get("method") != "event":
            continue
        p = msg["params"]
        if p.get("id") == rid and p.get("type", "state") == "state" and p.get("state") in states:
            return p, now
    raise RuntimeError("timed out waiting for %s to be %s" % (rid, states))


# ---------------------------------------------------------------- spawn


def read_stamp(path, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return float(text.splitlines()[0])
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    raise RuntimeError("no stamp in %s" % path)


def cmd_spawn(a):
    targets = []
    for t in a.target:
        name, _, path = t.partition("=")
        targets.append((name, path))
    deps, source = artifact(a.deps), artifact(a.source)
    limits = json.loads(a.limits) if a.limits else None
    results = {name: [] for name, _ in targets}
    n = 0
    for rnd in range(a.warmup + a.runs):
        for name, path in rotated(targets, rnd):
            n += 1
            stamp = os.path.join(a.stamp_dir, "stamp-%s-%d" % (name, n))
            ctl = Rpc(path)
            events = Rpc(path)
            events.call("events.subscribe", {"location": "spawn"})
            params = {"location": "spawn", "deps": deps, "source": source,
                      "entry": {"module": "hearth_workloads", "args": ["hold", "stamp=" + stamp]},
                      "restart": "never", "min_uptime_s": 0.05}
            if limits:
                params["limits"] = limits
            t0 = time.time()
            rid = ctl.call("deploy", params)["id"]
            ev, t_loading = wait_state(events, rid, ("loading", "failed"), 30)
            if ev["state"] == "failed":
                raise RuntimeError("deploy to %s failed: %s" % (name, ev))
            t_exec = read_stamp(stamp)
            wait_state(events, rid, ("ready", "failed"), 30)
            r = revision(ctl.call("status", {"location": "spawn"}), rid)
            ctl.call("stop", {"location": "spawn", "id": rid})
            ctl.close()
            events.close()
            if rnd >= a.warmup:
                results[name].append({
                    "exec_ms": (t_exec - t0) * 1000.0,
                    "spawn_ms": (t_loading - t0) * 1000.0,
                    "starting_ms": (r.get("timings_ms") or {}).get("starting"),
                    "driver": (r.get("cgroup") or {}).get("driver"),
                })
    with open(a.out, "w") as f:
        json.dump(results, f)


def cmd_report_spawn(a):
    with open(a.file) as f:
        results = json.load(f)
    print("deploy -> exec latency, medians over %d runs per driver (order rotating)" %
          min(len(v) for v in results.values()))
    print("%-10s %-8s %12s %12s %14s %10s" % ("target", "driver", "exec ms", "spawn ms",
                                               "starting ms", "p90 exec"))
    med = {}
    for name, runs in results.items():
        ex = [r["exec_ms"] for r in runs]
        sp = [r["spawn_ms"] for r in runs]
        st = [r["starting_ms"] for r in runs if r["starting_ms"] is not None]
        med[name] = (statistics.median(ex), statistics.median(sp),
                     statistics.median(st) if st else float("nan"))
        print("%-10s %-8s %12.2f %12.2f %14.2f %10.2f" % (
            name, runs[0]["driver"], med[name][0], med[name][1], med[name][2], pct(ex, 90)))
    if "none" in med:
        b0 = med["none"]
        for name in results:
            if name == "none":
                continue
            a0 = med[name]
            print("difference %s - none: exec %+.2f ms, spawn %+.2f ms, starting %+.2f ms" % (
                name, a0[0] - b0[0], a0[1] - b0[1], a0[2] - b0[2]))


# ---------------------------------------------------------------- client


def cmd_client(a):
    s = socket.create_connection(("127.0.0.1", a.port), timeout=2.0)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    lat = []
    waits = []
    served = []
    # Time this thread has spent runnable but waiting for a CPU so far
    # (schedstat's second field, ns), read around each round trip.
    sched_fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)

    def my_wait():
        return int(os.pread(sched_fd, 128, 0).split()[1])
    failed = 0
    interval = a.interval_us / 1e6
    start = time.perf_counter()
    for i in range(a.requests):
        if interval > 0:
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        msg = b"%d\n" % i
        w0 = my_wait()
        t0 = time.perf_counter_ns()
        served_ns = None
        try:
            s.sendall(msg)
            line = f.readline()
            ok = line == b"ok " + msg
            prefix = b"ok " + msg[:-1] + b" "
            if not ok and line.startswith(prefix) and line.endswith(b"\n"):
                served_ns = int(line[len(prefix):-1])
                ok = True
        except OSError:
            ok = False
            try:
                s.close()
                s = socket.create_connection(("127.0.0.1", a.port), timeout=2.0)
                f = s.makefile("rb")
            except OSError:
                pass
        t1 = time.perf_counter_ns()
        w1 = my_wait()
        if ok:
            lat.append((t1 - t0) / 1000.0)
            waits.append((w1 - w0) / 1000.0)
            if served_ns is not None:
                served.append(served_ns / 1000.0)
        else:
            failed += 1
    out = json.dumps({"lat_us": lat, "failed": failed, "run_delay_ns": my_wait(),
                      "wait_us": waits, "served_us": served})
    os.close(sched_fd)
    if a.out:
        with open(a.out, "w") as fo:
            fo.write(out)
    else:
        print(out)


# ----------------------------------------------------------------- noisy


class OomWaiter(threading.Thread):
    """Waits for the kernel's own OOM notification of one memory cgroup,
    independently of hearth, and records when it came: v1 an eventfd
    registered through cgroup.event_control on memory.oom_control, v2
    inotify on memory.events; after each wakeup the oom_kill counter is read
    every 0.2 ms for up to 200 ms (v1 notifies just before the kill) and the
    first read that sees it above 0 is the kill time. It blocks in
    select() (20 wakeups a second to check `stop`), so the bench does not
    burn CPU beside the server it measures (a 0.5 ms polling loop cost 19%
    of a CPU and was counted against hearth)."""

    def __init__(self, directory):
        super().__init__(daemon=True)
        self.dir = directory
        self.kill_time = None
        self.stop = False
        self.error = None  # why the notification could not be set up

    def _count(self):
        for name in ("memory.oom_control", "memory.events"):
            try:
                with open(os.path.join(self.dir, name)) as f:
                    for line in f:
                        k, _, v = line.partition(" ")
                        if k == "oom_kill":
                            return int(v)
            except OSError:
                pass
        return None

    def _arm(self):
        control = os.path.join(self.dir, "memory.oom_control")
        if os.path.exists(control):
            efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            cfd = os.open(control, os.O_RDONLY | os.O_CLOEXEC)
            try:
                with open(os.path.join(self.dir, "cgroup.event_control"), "w") as f:
                    f.write("%d %d" % (efd, cfd))
            finally:
                os.close(cfd)
            return efd
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0 or libc.inotify_add_watch(
                fd, os.path.join(self.dir, "memory.events").encode(), 0x2) < 0:  # IN_MODIFY
            raise OSError(ctypes.get_errno(), "inotify on " + self.dir)
        return fd

    def run(self):
        try:
            fd = self._arm()
        except OSError as e:
            self.error = str(e)
            return
        try:
            while not self.stop and self.kill_time is None:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if not ready:
                    if (self._count() or 0) > 0:  # a notification missed
                        self.kill_time = time.time()
                    continue
                try:
                    os.read(fd, 4096)
                except BlockingIOError:
                    pass
                # v1 notifies when the cgroup goes under OOM, just before the
                # kill: read the counter closely for a moment.
                deadline = time.time() + 0.2
                while time.time() < deadline:
                    if (self._count() or 0) > 0:
                        self.kill_time = time.time()
                        break
                    time.sleep(0.0002)
        finally:
            os.close(fd)


def _memory_dir(memory_mount, parent, name):
    return os.path.join(memory_mount + parent, "envs", name)


def run_client(helper, port, n, out, interval_us):
    return subprocess.Popen([sys.executable, helper, "client", "--port", str(port),
                             "--requests", str(n), "--interval-us", str(interval_us),
                             "--out", out])


def steal_ticks():
    """The machine's steal time so far (USER_HZ ticks, /proc/stat): time a
    vCPU wanted to run while the host ran something else."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


# The latency server's placement: an ordinary revision, one with a short
# scheduler slice (limits.cpu_slice_us), or one with a CPU of its own
# (limits.cpu_exclusive).
SERVER_MODES = {
    "shared": {},
    "slice": {"limits": {"cpu_slice_us": 100}},
    "exclusive": {"limits": {"cpus": 1, "cpu_exclusive": True}},
}
CONDS = ["alone", "cpu", "mem", "both", "both_idle"]


def cmd_noisy(a):
    deps, source = artifact(a.deps), artifact(a.source)
    helper = os.path.abspath(__file__)
    ctl = Rpc(a.socket)
    modes = a.server_modes.split(",")

    def deploy(loc, args, extra):
        ev = Rpc(a.socket)
        ev.call("events.subscribe", {"location": loc})
        params = {"location": loc, "deps": deps, "source": source,
                  "entry": {"module": "hearth_workloads", "args": args},
                  "restart": "never", "min_uptime_s": 0.3}
        params.update(extra)
        rid = ctl.call("deploy", params)["id"]
        return rid, ev

    def start_server(mode):
        # The old server must have let go of the port first.
        running = [r["id"] for loc in ctl.call("status", {})["locations"]
                   if loc["location"] == "latency" for r in loc["revisions"]
                   if r["state"] not in ("stopped", "failed")]
        for old in running:
            ev = Rpc(a.socket)
            ev.call("events.subscribe", {"location": "latency"})
            ctl.call("stop", {"location": "latency", "id": old})
            wait_state(ev, old, ("stopped", "failed"), 30)
            ev.close()
        rid, ev = deploy("latency", ["serve", "port=%d" % a.port, "timestamps=1"],
                         SERVER_MODES[mode])
        p, _ = wait_state(ev, rid, ("ready", "failed"), 30)
        ev.close()
        if p["state"] != "ready":
            raise RuntimeError("latency server (%s) failed: %s" % (mode, p))
        run_client(helper, a.port, 200, os.path.join(a.workdir, "warm.json"), 0).wait()
        return (revision(ctl.call("status", {"location": "latency"}), rid).get("cgroup") or {})

    result = {"modes": modes, "conds": CONDS, "lat": {}, "failed": {}, "phases": [],
              "oom": [], "cpuhog_usage_usec": [], "server_cpus": {}}

    def memory_hog(tag):
        beat = os.path.join(a.workdir, "beat-%s" % tag)
        mem_rid, ev = deploy("memhog", ["hog", "step_mb=4", "pause=0.01", "delay=0.3",
                                        "beat=" + beat],
                             {"limits": {"memory": "64Mi"}, "min_uptime_s": 0.1})
        # The cgroup exists once the process runs (loading).
        wait_state(ev, mem_rid, ("loading", "failed"), 30)
        r = revision(ctl.call("status", {"location": "memhog"}), mem_rid)
        name = os.path.basename((r.get("cgroup") or {}).get("path") or mem_rid)
        poller = OomWaiter(_memory_dir(a.memory_mount, a.parent, name))
        poller.start()
        p, t_event = wait_state(ev, mem_rid, ("failed",), 30)
        poller.stop = True
        poller.join()
        ev.close()
        last_beat = None
        try:
            with open(beat) as f:
                last_beat = float(f.read().split()[-1])
        except (OSError, IndexError, ValueError):
            pass
        result["oom"].append({
            "reason": p.get("reason"),
            "source": ((p.get("revision") or {}).get("oom") or {}).get("source"),
            "kernel_kill": poller.kill_time,
            "watch_error": poller.error,
            "last_beat": last_beat,
            "event_arrival": t_event,
            "event_ts": iso_to_epoch(p["ts"]) if p.get("ts") else None,
        })

    n_hog = 0
    for rnd in range(a.rounds):
        for mode in rotated(modes, rnd):
            cg = start_server(mode)
            result["server_cpus"][mode] = cg.get("cpu_set") or "all"
            for cond in CONDS:
                key = "%s/%s" % (mode, cond)
                cpu_rid = None
                if cond in ("cpu", "both", "both_idle"):
                    limits = {"cpus": 0.5}
                    if cond == "both_idle":
                        limits["cpu_weight"] = "idle"
                    cpu_rid, ev = deploy("cpuhog", ["spin", "threads=2"], {"limits": limits})
                    wait_state(ev, cpu_rid, ("ready", "failed"), 30)
                    ev.close()
                out = os.path.join(a.workdir, "%s-%s-%d.json" % (mode, cond, rnd))
                steal0 = steal_ticks()
                c = run_client(helper, a.port, a.requests, out, a.interval_us)
                if cond in ("mem", "both", "both_idle"):
                    while c.poll() is None:
                        n_hog += 1
                        memory_hog(str(n_hog))
                c.wait()
                steal = steal_ticks() - steal0
                with open(out) as f:
                    r = json.load(f)
                result["lat"].setdefault(key, []).extend(r["lat_us"])
                result.setdefault("client_wait", {}).setdefault(key, []).extend(r.get("wait_us", []))
                result.setdefault("served", {}).setdefault(key, []).extend(r.get("served_us", []))
                served_p99 = pct(r.get("served_us", []), 99)
                result["failed"][key] = result["failed"].get(key, 0) + r["failed"]
                result["phases"].append({"mode": mode, "cond": cond, "round": rnd,
                                         "p99": pct(r["lat_us"], 99), "steal": steal,
                                         "served_p99": served_p99,
                                         "client_wait_ns": r.get("run_delay_ns", 0)})
                if cpu_rid:
                    st = revision(ctl.call("status", {"location": "cpuhog"}), cpu_rid)
                    result["cpuhog_usage_usec"].append(
                        (st.get("cgroup") or {}).get("cpu_usage_usec"))
                    ctl.call("stop", {"location": "cpuhog"})
    ctl.call("stop", {"location": "latency"})
    with open(a.out, "w") as f:
        json.dump(result, f)


def cmd_report_noisy(a):
    with open(a.file) as f:
        r = json.load(f)
    lat, phases = r["lat"], r["phases"]
    labels = {"alone": "alone", "cpu": "cpu hog (cpus 0.5)",
              "mem": "memory hogs (OOM)", "both": "cpu hog + memory hogs",
              "both_idle": "idle cpu hog + memory hogs"}
    base_mode = r["modes"][0]
    print("latency server: paced requests over one connection, %d per condition" %
          len(lat["%s/alone" % base_mode]))
    print("  vs own alone (the issue's aim, <= 1.25): this placement's p99 against the same "
          "placement alone; pooled over every request, and by round: the median over rounds "
          "of each round's own ratio")
    print("  vs %s alone: against the %s server alone, to compare placements" % (
        base_mode, base_mode))
    print("  steal: host steal time during a phase, both CPUs together (ms, median / max over rounds)")
    print("  client wait: time the client (outside hearth, on the same CPUs as the neighbours) "
          "spent runnable but waiting for a CPU (schedstat), us per request, median over rounds; "
          "slow: of the round trips above the p99, the share the client itself waited for a CPU "
          "inside them")

    def round_p99(mode, cond, key):
        return {p["round"]: p.get(key) for p in phases if p["mode"] == mode and p["cond"] == cond}

    def by_round(mode, cond, ref_mode, key="p99"):
        """The median over rounds of each round's p99 (`key`) against the
        same round's `ref_mode` alone."""
        mine, ref = round_p99(mode, cond, key), round_p99(ref_mode, "alone", key)
        ratios = [v / ref[k] for k, v in mine.items() if v and ref.get(k)]
        return statistics.median(ratios) if ratios else float("nan")

    base = pct(lat["%s/alone" % base_mode], 99)
    verdicts = []
    for mode in r["modes"]:
        own = pct(lat["%s/alone" % mode], 99)
        print("server %s (CPUs %s):" % (mode, r["server_cpus"].get(mode, "?")))
        print("  %-26s %8s %8s %9s %6s %17s %17s %11s %13s" % (
            "", "p50 us", "p99 us", "max us", "failed", "vs own alone",
            "vs %s alone" % base_mode, "steal ms", "client wait"))
        print("  %-26s %8s %8s %9s %6s %8s %8s %8s %8s %11s %6s %6s" % (
            "", "", "", "", "", "pooled", "by round", "pooled", "by round", "",
            "us/req", "slow"))
        worst, failed = 0.0, 0
        for c in r["conds"]:
            v = lat["%s/%s" % (mode, c)]
            mine = [p for p in phases if p["mode"] == mode and p["cond"] == c]
            steal = [p["steal"] * 1000.0 / os.sysconf("SC_CLK_TCK") for p in mine]
            n_req = max(1, len(v) // max(1, len(mine)))
            wait_c = statistics.median([p.get("client_wait_ns", 0) / 1000.0 / n_req for p in mine])
            # Of the requests slower than the p99: how much of each was the
            # client itself waiting for a CPU (inside the timed round trip).
            cw = r.get("client_wait", {}).get("%s/%s" % (mode, c), [])
            p99v = pct(v, 99)
            slow = [(lt, w) for lt, w in zip(v, cw) if lt >= p99v] if len(cw) == len(v) else []
            slow_share = (sum(w for _, w in slow) / sum(lt for lt, _ in slow)) if slow else float("nan")
            n_failed = r["failed"]["%s/%s" % (mode, c)]
            failed += n_failed
            if c != "alone":
                worst = max(worst, pct(v, 99) / own)
            print("  %-26s %8.1f %8.1f %9.1f %6d %8.2f %8.2f %8.2f %8.2f %5.0f / %3.0f %6.1f %5.0f%%" % (
                labels[c], pct(v, 50), pct(v, 99), max(v), n_failed,
                pct(v, 99) / own, by_round(mode, c, mode),
                pct(v, 99) / base, by_round(mode, c, base_mode),
                statistics.median(steal), max(steal), wait_c, 100 * slow_share))
        verdicts.append("server %s, round trip (client's view): worst p99 with neighbours %.2fx "
                        "its own alone (aim <= 1.25: %s), %d failed requests" % (
                            mode, worst, "met" if worst <= 1.25 else "missed", failed))
        served = r.get("served", {})
        if all(served.get("%s/%s" % (mode, c)) for c in r["conds"]):
            own_s = pct(served["%s/alone" % mode], 99)
            print("  the server's own part (kernel receive timestamp of the request -> answer written):")
            print("  %-26s %8s %8s %9s %8s %8s" % ("", "p50 us", "p99 us", "max us", "pooled", "by round"))
            worst_s = 0.0
            for c in r["conds"]:
                v = served["%s/%s" % (mode, c)]
                if c != "alone":
                    worst_s = max(worst_s, pct(v, 99) / own_s)
                print("  %-26s %8.1f %8.1f %9.1f %8.2f %8.2f" % (
                    labels[c], pct(v, 50), pct(v, 99), max(v), pct(v, 99) / own_s,
                    by_round(mode, c, mode, "served_p99")))
            verdicts.append("server %s, its own part: worst p99 with neighbours %.2fx its own alone "
                            "(aim <= 1.25: %s)" % (mode, worst_s,
                                                   "met" if worst_s <= 1.25 else "missed"))
    ooms = r["oom"]
    reasons = {}
    for o in ooms:
        reasons[o["reason"]] = reasons.get(o["reason"], 0) + 1
    kernel = [(o["event_arrival"] - o["kernel_kill"]) * 1000 for o in ooms if o["kernel_kill"]]
    beat = [(o["event_arrival"] - o["last_beat"]) * 1000 for o in ooms if o["last_beat"]]
    stamp = [(o["event_ts"] - o["kernel_kill"]) * 1000 for o in ooms if o["kernel_kill"] and o["event_ts"]]
    print("memory hogs: %d, outcomes %s" % (len(ooms), reasons))
    errors = [o["watch_error"] for o in ooms if o.get("watch_error")]
    if errors:
        print("bench could not watch the kernel's OOM notification for %d hogs, e.g.: %s" % (
            len(errors), errors[0]))
    if kernel:
        print("OOM kill (kernel notification, seen by the bench) -> oom_killed event received: "
              "median %.1f ms, max %.1f ms (n=%d); -> event ts: median %.1f ms" % (
                  statistics.median(kernel), max(kernel), len(kernel),
                  statistics.median(stamp) if stamp else float("nan")))
    if beat:
        print("hog's last heartbeat -> event received: median %.1f ms, max %.1f ms (n=%d)" % (
            statistics.median(beat), max(beat), len(beat)))
    usage = [u for u in r.get("cpuhog_usage_usec", []) if u]
    if usage:
        print("cpu hog cpu time per phase (cpus 0.5): median %.2f s, min %.2f s, max %.2f s (n=%d)" % (
            statistics.median(usage) / 1e6, min(usage) / 1e6, max(usage) / 1e6, len(usage)))
    if kernel:
        verdicts.append("OOM kill -> oom_killed event: max %.1f ms (aim < 1000 ms: %s)" % (
            max(kernel), "met" if max(kernel) < 1000 else "missed"))
    for v in verdicts:
        print("aim: " + v)


def _wakeup_one(cpu, seconds, conn):
    os.sched_setaffinity(0, {cpu})
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
    except OSError:
        pass  # measured at normal priority then; still informative
    late = []
    end = time.monotonic() + seconds
    while True:
        t = time.monotonic()
        if t > end:
            break
        time.sleep(0.0002)
        late.append((time.monotonic() - t - 0.0002) * 1e6)
    conn.send(late)


def cmd_wakeup(a):
    import multiprocessing
    procs = []
    for cpu in sorted(os.sched_getaffinity(0)):
        parent, child = multiprocessing.Pipe(False)
        p = multiprocessing.Process(target=_wakeup_one, args=(cpu, a.seconds, child))
        p.start()
        procs.append((cpu, p, parent))
    for cpu, p, conn in procs:
        late = sorted(conn.recv())
        p.join()
        print("machine wakeup latency, CPU %d (SCHED_FIFO sleeper, %d wakeups): p50 %.0f us, "
              "p99 %.0f us, max %.0f us, %d over 1 ms" % (
                  cpu, len(late), pct(late, 50), pct(late, 99), late[-1],
                  sum(1 for x in late if x > 1000)))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("spawn")
    s.add_argument("--target", action="append", required=True)
    s.add_argument("--deps", required=True)
    s.add_argument("--source", required=True)
    s.add_argument("--runs", type=int, default=30)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--limits")
    s.add_argument("--stamp-dir", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("report-spawn")
    s.add_argument("file")
    s = sub.add_parser("client")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--requests", type=int, default=3000)
    s.add_argument("--interval-us", type=int, default=1000)
    s.add_argument("--out")
    s = sub.add_parser("noisy")
    s.add_argument("--socket", required=True)
    s.add_argument("--deps", required=True)
    s.add_argument("--source", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--requests", type=int, default=3000)
    s.add_argument("--interval-us", type=int, default=1000)
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--server-modes", default="shared,exclusive")
    s.add_argument("--memory-mount", required=True)
    s.add_argument("--parent", required=True)
    s.add_argument("--workdir", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("wakeup")
    s.add_argument("--seconds", type=float, default=5.0)
    s = sub.add_parser("report-noisy")
    s.add_argument("file")
    a = ap.parse_args()
    {"spawn": cmd_spawn, "report-spawn": cmd_report_spawn, "client": cmd_client,
     "noisy": cmd_noisy, "report-noisy": cmd_report_noisy, "wakeup": cmd_wakeup}[a.cmd](a)


if __name__ == "__main__":
    main()
