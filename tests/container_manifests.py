#!/usr/bin/env python3
"""Checks container/kubernetes/*.yaml and container/Dockerfile.

No cluster and no Docker engine here, so this parses the files (the manifest
with python3-yaml) and checks what hearth depends on:

Kubernetes: a Deployment whose container runs hearth; an emptyDir mounted at
hearth's --state-dir; startup, readiness and liveness probes that exec
hearthctl, each with a probe timeout above hearthctl's own --timeout, and a
liveness probe that tolerates minutes of silence (a busy pod is not killed);
terminationGracePeriodSeconds above --grace; cpu and memory requests and
limits, with --max-memory/--max-cpus within the limits and --store-max-bytes
within the state volume; the comment on cgroup delegation.

Dockerfile: a Debian 12 build stage that builds the bundle; a python:3.11-slim
runtime stage that copies only the bundle from it; ENTRYPOINT in exec (JSON)
form running hearth as a non-root --user; a VOLUME for the state dir; a
HEALTHCHECK with hearthctl.

Usage: container_manifests.py SOURCE_ROOT. Exit 0 pass, 1 fail, 77 skipped
(no python3-yaml; a failure under HEARTH_TESTS_MUST_WORK=1).
"""

import glob
import json
import os
import re
import shlex
import sys

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
    return cond


def quantity(q):
    """A Kubernetes quantity ("4Gi", "500m", "2", "1.5G") as a float in base
    units (bytes or cores)."""
    s = str(q).strip()
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "m": 1e-3}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", s)
    if not m or (m.group(2) and m.group(2) not in units):
        raise ValueError("not a quantity: %r" % q)
    return float(m.group(1)) * units.get(m.group(2), 1)


def hearth_option(args, name):
    """The value of --NAME in an argument list (--NAME=V or --NAME V)."""
    for i, a in enumerate(args):
        if a.startswith("--%s=" % name):
            return a.split("=", 1)[1]
        if a == "--" + name and i + 1 < len(args):
            return args[i + 1]
    return None


def check_probe(c, kind):
    p = c.get(kind)
    if not check(isinstance(p, dict), "%s is missing" % kind):
        return None
    cmd = (p.get("exec") or {}).get("command") or []
    check(bool(cmd) and os.path.basename(cmd[0]) == "hearthctl",
          "%s does not exec hearthctl: %r" % (kind, cmd))
    check("ping" in cmd or "status" in cmd, "%s runs no hearthctl ping/status: %r" % (kind, cmd))
    t = hearth_option(cmd, "timeout")
    check(t is not None, "%s: hearthctl has no --timeout of its own" % kind)
    if t is not None:
        check(p.get("timeoutSeconds", 1) > float(t),
              "%s: timeoutSeconds %s is not above hearthctl --timeout %s"
              % (kind, p.get("timeoutSeconds", 1), t))
    return p


def check_kubernetes(root):
    files = sorted(glob.glob(os.path.join(root, "container", "kubernetes", "*.yaml")))
    if not check(bool(files), "no container/kubernetes/*.yaml"):
        return
    import yaml

    docs = []
    text = ""
    for f in files:
        with open(f) as fh:
            body = fh.read()
        text += body
        docs += [d for d in yaml.safe_load_all(body) if d]
    deps = [d for d in docs if d.get("kind") == "Deployment"]
    if not check(len(deps) == 1, "expected one Deployment, found %d" % len(deps)):
        return
    d = deps[0]
    check(d.get("apiVersion") == "apps/v1", "Deployment apiVersion is not apps/v1")
    spec = d["spec"]
    check(spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items(),
          "the selector does not match the pod template's labels")
    pod = spec["template"]["spec"]
    containers = [c for c in pod["containers"]
                  if os.path.basename((c.get("command") or [""])[0]) == "hearth"]
    if not check(len(containers) == 1, "no container with hearth as its command (entrypoint)"):
        return
    c = containers[0]
    args = c.get("args") or []

    state_dir = hearth_option(args, "state-dir") or "/var/lib/hearth"
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    state_vol = volumes.get(mounts.get(state_dir, ""), {})
    check("emptyDir" in state_vol or "persistentVolumeClaim" in state_vol,
          "no emptyDir/PVC mounted at --state-dir %s" % state_dir)

    for kind in ("startupProbe", "readinessProbe"):
        check_probe(c, kind)
    live = check_probe(c, "livenessProbe")
    if live:
        tolerated = live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
        check(tolerated >= 120,
              "livenessProbe restarts after %ss without an answer: too eager for a busy pod" % tolerated)

    grace = float(hearth_option(args, "grace") or 10)
    check(pod.get("terminationGracePeriodSeconds", 30) > grace,
          "terminationGracePeriodSeconds %s is not above --grace %s"
          % (pod.get("terminationGracePeriodSeconds", 30), grace))

    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    for k in ("cpu", "memory"):
        if check(k in req and k in lim, "resources.requests/limits lack %s" % k):
            check(quantity(req[k]) <= quantity(lim[k]), "requests.%s above limits.%s" % (k, k))
    max_mem = hearth_option(args, "max-memory")
    max_cpus = hearth_option(args, "max-cpus")
    store = hearth_option(args, "store-max-bytes")
    if check(max_mem is not None and "memory" in lim, "no --max-memory to match limits.memory"):
        check(quantity(max_mem) < quantity(lim["memory"]),
              "--max-memory %s leaves hearth nothing of limits.memory %s" % (max_mem, lim["memory"]))
    if check(max_cpus is not None and "cpu" in lim, "no --max-cpus to match limits.cpu"):
        check(quantity(max_cpus) <= quantity(lim["cpu"]),
              "--max-cpus %s above limits.cpu %s" % (max_cpus, lim["cpu"]))
    if check(store is not None, "no --store-max-bytes to match the state volume"):
        size = (state_vol.get("emptyDir") or {}).get("sizeLimit")
        if size is not None:
            check(quantity(store) <= quantity(size),
                  "--store-max-bytes %s above the state emptyDir's sizeLimit %s" % (store, size))
        if "ephemeral-storage" in lim:
            check(quantity(store) <= quantity(lim["ephemeral-storage"]),
                  "--store-max-bytes above limits.ephemeral-storage")

    for word in ("cgroup v2", "delegated", "degraded", "none"):
        check(word in text, "the manifest's comments do not mention %r (cgroup access)" % word)


def check_dockerfile(root):
    path = os.path.join(root, "container", "Dockerfile")
    if not check(os.path.exists(path), "no container/Dockerfile"):
        return
    with open(path) as fh:
        raw = fh.read()
    # Instructions, with continuation lines joined and comments dropped.
    lines, cur = [], ""
    for line in raw.splitlines():
        if not cur and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]
    froms = [a for k, a in instr if k == "FROM"]
    check(len(froms) >= 2, "not multi-stage: %d FROM" % len(froms))
    if len(froms) >= 2:
        check(re.match(r"debian:(12|bookworm)\S*\s+AS\s+\w+", froms[0], re.I) is not None,
              "the first stage is not Debian 12: %s" % froms[0])
        check(froms[-1].split()[0].startswith("python:3.11-slim"),
              "the runtime stage is not python:3.11-slim: %s" % froms[-1])
    check(any(k == "RUN" and "ninja" in a and "bundle" in a for k, a in instr),
          "the build stage does not run `ninja ... bundle`")
    # Everything after the last FROM: the runtime stage.
    last = max(i for i, (k, _) in enumerate(instr) if k == "FROM")
    runtime = instr[last + 1:]
    copies = [a for k, a in runtime if k == "COPY"]
    check(bool(copies) and all("--from=" in a and "/bundle/" in a for a in copies),
          "the runtime stage copies something other than the bundle: %r" % copies)
    entry = [a for k, a in runtime if k == "ENTRYPOINT"]
    if check(len(entry) == 1, "the runtime stage has no ENTRYPOINT"):
        try:
            argv = json.loads(entry[0])
        except ValueError:
            argv = None
        if check(isinstance(argv, list), "ENTRYPOINT is not in exec (JSON array) form: %s" % entry[0]):
            check(os.path.basename(argv[0]) == "hearth", "ENTRYPOINT does not run hearth: %r" % argv)
            user = hearth_option(argv, "user")
            check(user not in (None, "root", "0"), "revisions do not run as a non-root --user: %r" % argv)
            check(any(k == "RUN" and "useradd" in a and str(user) in a for k, a in runtime),
                  "the runtime stage does not create the --user %r" % user)
    check(re.search(r"(?m)^ENTRYPOINT.*\n?", raw) is not None and
          re.search(r"#[^\n]*PID 1", raw) is not None,
          "no comment says why the exec form (PID 1 gets the signals)")
    check(any(k == "VOLUME" and "/var/lib/hearth" in a for k, a in runtime), "no VOLUME for /var/lib/hearth")
    hc = [a for k, a in runtime if k == "HEALTHCHECK"]
    check(len(hc) == 1 and "hearthctl" in hc[0], "no HEALTHCHECK with hearthctl: %r" % hc)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    try:
        import yaml  # noqa: F401  (python3-yaml, scripts/ensure-deps.sh)
    except ImportError:
        print("SKIP: container_manifests: needs python3-yaml", file=sys.stderr)
        sys.exit(1 if os.environ.get("HEARTH_TESTS_MUST_WORK") == "1" else 77)
    check_kubernetes(root)
    check_dockerfile(root)
    for f in FAILURES:
        print("FAIL: container_manifests: " + f, file=sys.stderr)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
