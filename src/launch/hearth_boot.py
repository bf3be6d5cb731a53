# hearth_boot.py: bootstrap of hearth's `native` runtime.
#
# hearth embeds this file, writes it to <state-dir>/lib/hearth_boot.py and runs
#
#   PYTHON -s [inject_python_args...] hearth_boot.py [--argv0 ARG0] -m MODULE [ARGS...]
#   PYTHON -s [inject_python_args...] hearth_boot.py [--argv0 ARG0] -m MODULE:FUNC [ARGS...]
#   PYTHON -s [inject_python_args...] hearth_boot.py [--argv0 ARG0] --script NAME [ARGS...]
#
# with HEARTH_SYS_PATH (os.pathsep-joined absolute entries from
# hearth::build_sys_path) and HEARTH_INHERIT_PATH (false|prefer|fallback, the
# main pex's inherit_path). ARGS already hold PEX-INFO inject_args (expanded)
# before the user's own.
#
# It reproduces what pex 2.x does for `PEX_PATH=deps.pex python3 source.pex`
# (doc/pex-format.md has the sources). HEARTH_SYS_PATH comes in two parts:
# the head, up to and including the last entry that holds a PEX-INFO file (pex
# roots, the main root last, plus any distributions a fallback pex inserted at
# the head), and the tail (distribution entries pex appends). The result is
#   sys.path = head + stdlib + tail, .pth files of every distribution entry
#   processed as site.addsitedir does (pex calls it), in pex's order;
# system and user site-packages and PYTHONPATH entries are dropped, unless
# inherit_path is prefer (site-packages after the stdlib, PYTHONPATH just
# before the main root) or fallback (site-packages after the stdlib, then
# PYTHONPATH); modules imported from dropped directories during start-up are
# forgotten (pex/pex.py minimum_sys_modules).
# Then the entry runs as pex runs it:
#   -m MODULE       runpy.run_module(MODULE, run_name="__main__", alter_sys=True),
#                   exit status 0 unless the module calls sys.exit;
#   -m MODULE:FUNC  import MODULE, getattr along FUNC's dots, call it and pass the
#                   result to sys.exit (None -> 0, int -> that, str -> printed, 1);
#   --script NAME   a console_scripts (then gui_scripts) entry point of a
#                   distribution on the path, else a script file from a
#                   distribution's .prefix/bin/ (installed chroot) or
#                   <name>.data/scripts/ (unpacked wheel): Python scripts run in
#                   this process with sys.argv[0] = NAME; other files are exec'd.
# sys.argv[0] is ARG0 for MODULE:FUNC and console scripts (pex shows the pex
# file there), defaulting to the main tree root (the last head entry).
#
# Start-up cost matters (every launch pays it): nothing beyond os, sys and the
# already-imported site module is imported unless an entry mode needs it.
# Compatible with Python 3.8+.

import os
import sys


def _die(message, status=2):
    sys.stderr.write("hearth-boot: %s\n" % message)
    sys.stderr.flush()
    sys.exit(status)


def _parse_argv(argv):
    argv0 = None
    i = 0
    while i < len(argv) and argv[i] == "--argv0":
        if i + 1 >= len(argv):
            _die("--argv0 needs a value")
        argv0 = argv[i + 1]
        i += 2
    if i + 1 >= len(argv) or argv[i] not in ("-m", "--script"):
        _die("usage: hearth_boot.py [--argv0 ARG0] (-m MODULE[:FUNC] | --script NAME) [ARGS...]")
    return argv[i], argv[i + 1], argv0, argv[i + 2:]


def _under(path, prefixes):
    return path.startswith(prefixes) or (path + os.sep).startswith(prefixes)


def _scrub_modules(tainted):
    # pex/pex.py PEX.minimum_sys_modules: forget modules that start-up (site,
    # .pth lines) imported from directories the environment does not see.
    if not tainted:
        return
    prefixes = tuple(os.path.join(p, "") for p in tainted)
    for name, module in list(sys.modules.items()):
        if name == "__main__":
            continue
        module_file = getattr(module, "__file__", None)
        if module_file and _under(module_file, prefixes):
            del sys.modules[name]
            continue
        module_path = getattr(module, "__path__", None)
        if module_path is None:
            continue
        if not isinstance(module_path, list):
            del sys.modules[name]
            continue
        module_path[:] = [p for p in module_path if not _under(p, prefixes)]
        if not module_path:
            del sys.modules[name]
    for key in list(sys.path_importer_cache):
        if isinstance(key, str) and _under(key, prefixes):
            del sys.path_importer_cache[key]


def _setup_sys_path(raw, inherit):
    import site

    entries = [e for e in raw.split(os.pathsep) if e] if raw else []
    is_root = [os.path.isfile(os.path.join(e, "PEX-INFO")) for e in entries]
    split = 0
    for i, root in enumerate(is_root):
        if root:
            split = i + 1
    head, tail = entries[:split], entries[split:]
    head_dists = [e for e, root in zip(head, is_root) if not root]

    path = list(sys.path)
    tainted = []
    if path and not getattr(sys.flags, "safe_path", False):
        here = (
            os.path.dirname(os.path.abspath(__file__)),
            os.path.dirname(os.path.realpath(__file__)),
        )
        if path[0] in here:
            tainted.append(path.pop(0))

    pythonpath = set()
    if not sys.flags.ignore_environment:
        for p in os.environ.get("PYTHONPATH", "").split(os.pathsep):
            if p:
                pythonpath.add(p)
                pythonpath.add(os.path.abspath(p))

    site_dirs = set()
    try:
        site_dirs.update(site.getsitepackages())
    except AttributeError:  # very old virtualenv site.py
        pass
    if site.ENABLE_USER_SITE:
        site_dirs.add(site.getusersitepackages())
    # site.main() only appends (site-packages, then what their .pth files
    # add), so everything from the first site directory on is site's doing.
    cut = len(path)
    for i, p in enumerate(path):
        if p in site_dirs:
            cut = i
            break
    site_part = path[cut:]
    user_pythonpath = [p for p in path[:cut] if p in pythonpath]
    stdlib = [p for p in path[:cut] if p not in pythonpath]
    tainted.extend(site_part)
    tainted.extend(user_pythonpath)

    if inherit == "prefer":
        new = head[:-1] + user_pythonpath + head[-1:] + stdlib + site_part
    elif inherit == "fallback":
        new = head + stdlib + site_part + user_pythonpath
    else:
        new = head + stdlib
    seen = set()
    sys.path[:] = [p for p in new if not (p in seen or seen.add(p))]
    _scrub_modules(tainted)
    sys.displayhook = sys.__displayhook__
    sys.excepthook = sys.__excepthook__

    # pex/environment.py PEXEnvironment._activate: each distribution entry is
    # placed, then site.addsitedir'ed so its .pth files run (their additions
    # are appended). Head entries were inserted one by one, so their order of
    # activation is the reverse of their order on the path. One shared
    # known-paths set keeps this linear in the number of entries.
    known = set(site.makepath(p)[1] for p in sys.path)
    for entry in reversed(head_dists):
        site.addsitedir(entry, known)
    for entry in tail:
        site.addsitedir(entry, known)
    main_root = head[-1] if head else None
    return main_root, list(reversed(head_dists)) + tail


def _resolve_callable(module_name, attrs):
    __import__(module_name)
    target = sys.modules[module_name]
    try:
        for attr in attrs.split("."):
            target = getattr(target, attr)
    except AttributeError as e:
        raise ImportError("Could not resolve %s in %s: %s" % (attrs, target, e))
    return target


def _entry_point_in(entry_points_txt, name):
    try:
        with open(entry_points_txt, "rb") as fp:
            lines = fp.read().decode("utf-8").splitlines()
    except (IOError, OSError, UnicodeDecodeError):
        return None
    found = {}
    group = None
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
        elif group in ("console_scripts", "gui_scripts"):
            parts = line.split("=")
            if len(parts) == 2 and parts[0].strip() == name:
                found[group] = parts[1].strip()
    return found.get("console_scripts") or found.get("gui_scripts")


def _normalize(project):
    out = []
    for ch in project.lower():
        if ch in "-_.":
            if out and out[-1] != "-":
                out.append("-")
        else:
            out.append(ch)
    return "".join(out).strip("-")


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _find_console_script(name, dists):
    # pex/finders.py get_entry_point_from_console_script: one project only.
    by_project = {}
    for entry in dists:
        for child in _listdir(entry):
            if not child.endswith(".dist-info"):
                continue
            spec = _entry_point_in(os.path.join(entry, child, "entry_points.txt"), name)
            if spec:
                project = _normalize(child[: -len(".dist-info")].rsplit("-", 1)[0])
                by_project[project] = spec
    if len(by_project) > 1:
        _die(
            "ambiguous script %r: console scripts in %s" % (name, ", ".join(sorted(by_project)))
        )
    return next(iter(by_project.values()), None)


def _find_script_file(name, dists):
    # pex/finders.py DistributionScript.find: <chroot>/.prefix/bin/NAME for
    # installed chroots; <name>.data/scripts/NAME in a wheel.
    for entry in dists:
        candidate = os.path.join(entry, ".prefix", "bin", name)
        if os.path.isfile(candidate):
            return candidate
        for child in _listdir(entry):
            if child.endswith(".data"):
                candidate = os.path.join(entry, child, "scripts", name)
                if os.path.isfile(candidate):
                    return candidate
    return None


def _is_python_script(path):
    import re

    try:
        with open(path, "rb") as fp:
            first = fp.readline(4096)
    except (IOError, OSError):
        return False
    if not first.startswith(b"#!"):
        return False
    return (
        re.match(
            br"(?i)(?:^|.*\W)(?:python|pypy)(?:\d+(?:\.\d+)*)?(?:\.exe)?(?:\s[^\s]|$)",
            first[2:].strip(),
        )
        is not None
    )


def _run_entry(spec, argv0, args):
    module_name, sep, attrs = spec.partition(":")
    module_name = module_name.strip()
    attrs = attrs.partition("[")[0].strip()
    if not module_name or (sep and not attrs):
        _die("invalid entry point %r" % spec)
    if not attrs:
        import runpy

        sys.argv[:] = [module_name] + args  # run_module replaces [0] with the file
        runpy.run_module(module_name, run_name="__main__", alter_sys=True)
        return 0
    sys.argv[:] = [argv0 or spec] + args
    return _resolve_callable(module_name, attrs)()


def _run_script(name, dists, argv0, args):
    spec = _find_console_script(name, dists)
    if spec:
        return _run_entry(spec, argv0, args)
    path = _find_script_file(name, dists)
    if path is None:
        _die("could not find script %r in any distribution" % name)
    if _is_python_script(path):
        with open(path, "rb") as fp:
            code = compile(fp.read(), path, "exec", 0, True)
        sys.argv[:] = [name] + args
        namespace = {
            "__name__": "__main__",
            "__file__": path,
            "__doc__": None,
            "__package__": None,
            "__builtins__": __builtins__,
        }
        exec(code, namespace)
        return 0
    # pex waits on a child here; exec keeps signals and exit status exact.
    try:
        os.execv(path, [path] + args)
    except OSError as e:
        _die("could not execute script %s: %s" % (path, e), 126)


# Structured load errors (issue 13; health/load_error.hpp has the document).
# When the entry raises (not SystemExit, not KeyboardInterrupt), hearth learns
# the exception class, message, frames and cause chain before the process
# exits: as HEARTH_LOAD_ERROR=<json> on $NOTIFY_SOCKET and in
# $HEARTH_RUNTIME_DIR/load_error.json. The exception is then re-raised, so
# Python prints the usual traceback and exits 1 exactly as without this.
# Bounds match what hearth accepts: at most _LOAD_ERROR_LIMIT bytes of JSON
# (the datagram stays under 64 KiB with its key), 8 exceptions in a chain,
# strings capped; frames are trimmed from the middle, then causes dropped.

_LOAD_ERROR_LIMIT = 60000
# (frames kept per exception, exceptions in the chain, characters per string)
_LOAD_ERROR_STEPS = ((100, 8, 4000), (40, 4, 2000), (10, 2, 1000), (4, 1, 400), (0, 1, 200))


def _clip(text, limit):
    # Lone surrogates (undecodable file names) would make the JSON invalid
    # for strict parsers; they become visible \udcXX escapes instead.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text


def _type_name(exc):
    cls = type(exc)
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or cls.__name__
    if not isinstance(module, str) or module in ("builtins", "__main__"):
        return name
    return module + "." + name


def _message(exc):
    try:
        return str(exc)
    except BaseException:
        return "<exception str() failed>"


def _frames(exc, boot_files, limit):
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    # hearth's own bootstrap (and runpy under it) is not the user's code.
    while frames and frames[0][0] in boot_files:
        frames.pop(0)
    frames = [f for f in frames if not f[0].startswith("<frozen importlib")]
    if isinstance(exc, SyntaxError) and isinstance(exc.filename, str):
        frames.append((exc.filename, exc.lineno or 0, ""))
    out = [{"file": _clip(str(f), limit), "line": int(n or 0), "function": _clip(str(fn), limit)}
           for f, n, fn in frames]
    return out


def _describe(exc, boot_files, frames_kept, depth, limit):
    root = parent = None
    seen = set()
    via = None
    while exc is not None and depth > 0 and id(exc) not in seen:
        seen.add(id(exc))
        depth -= 1
        frames = _frames(exc, boot_files, limit)
        doc = {"type": _clip(_type_name(exc), limit), "message": _clip(_message(exc), limit)}
        if len(frames) > frames_kept:
            head = (frames_kept + 1) // 2
            tail = frames_kept - head
            doc["frames"] = frames[:head] + (frames[len(frames) - tail:] if tail else [])
            doc["frames_omitted"] = len(frames) - frames_kept
            doc["omitted_at"] = head
        else:
            doc["frames"] = frames
        if via:
            doc["via"] = via
        if parent is None:
            root = doc
        else:
            parent["cause"] = doc
        parent = doc
        if exc.__cause__ is not None:
            exc, via = exc.__cause__, "cause"
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, via = exc.__context__, "context"
        else:
            exc = None
    return root


def _load_error_json(exc):
    import json

    # runpy is "<frozen runpy>" in tracebacks of Python 3.11+.
    boot_files = set([__file__, os.path.abspath(__file__), "<frozen runpy>"])
    runpy = sys.modules.get("runpy")
    if runpy is not None and getattr(runpy, "__file__", None):
        boot_files.add(runpy.__file__)
    for frames_kept, depth, limit in _LOAD_ERROR_STEPS:
        text = json.dumps(_describe(exc, boot_files, frames_kept, depth, limit),
                          separators=(",", ":"))
        if len(text) <= _LOAD_ERROR_LIMIT:
            return text
    return json.dumps({"type": _clip(_type_name(exc), 200), "message": "", "frames": []})


def _send_notify(payload):
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.settimeout(1.0)  # a stuck receiver must not keep the process alive
        sock.sendto(payload, address)
    finally:
        sock.close()


def _write_runtime_file(text):
    directory = os.environ.get("HEARTH_RUNTIME_DIR", "")
    if not directory:
        return
    path = os.path.join(directory, "load_error.json")
    tmp = "%s.%d.tmp" % (path, os.getpid())
    data = (text + "\n").encode("ascii")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _report_load_error(exc):
    # Never raises: the real exception must reach the interpreter unchanged.
    try:
        text = _load_error_json(exc)
    except BaseException:
        return
    for report in (
        lambda: _send_notify(("HEARTH_LOAD_ERROR=" + text + "\n").encode("ascii")),
        lambda: _write_runtime_file(text),
    ):
        try:
            report()
        except BaseException:
            pass


def main():
    mode, target, argv0, args = _parse_argv(sys.argv[1:])
    raw = os.environ.pop("HEARTH_SYS_PATH", "")
    inherit = os.environ.pop("HEARTH_INHERIT_PATH", "") or "false"
    if inherit not in ("false", "prefer", "fallback"):
        _die("HEARTH_INHERIT_PATH must be false, prefer or fallback, not %r" % inherit)
    main_root, dists = _setup_sys_path(raw, inherit)
    if argv0 is None:
        argv0 = main_root
    try:
        if mode == "--script":
            return _run_script(target, dists, argv0, args)
        return _run_entry(target, argv0, args)
    except Exception as exc:
        _report_load_error(exc)
        raise


if __name__ == "__main__":
    sys.exit(main())
