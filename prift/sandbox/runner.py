"""The sandbox's runner: the program that runs untrusted code, started as ``python -I runner.py MODE DIR`` (with a
scrubbed environment, usually under ``unshare -rmn``).  It knows the code and the test inputs, never an expected
output; it answers with outputs as plain data (:mod:`plain`), one JSON line each, on its stdout.  Standard library
only (plus evalplus's own guard module, loaded by path, in ``call`` mode).

``call ROOT`` (HumanEval+ / MBPP+): reads one JSON line ``{code, entry_point, inputs (plain), memory_bytes,
cpu_seconds, file_bytes, disk_bytes, tmpfs, max_created, guard, preload, project}``; mounts a tmpfs of
``disk_bytes`` over ROOT when ``tmpfs`` (the process is root of its own user + mount namespace), imports the
``preload`` modules, applies evalplus's ``reliability_guard`` (the file ``guard``) and :func:`confine.confine`, says
``{"ready": ...}``, runs the code (``{"loaded": true}`` or ``{"error": ...}``), then calls the entry point on each
input in turn inside evalplus's ``swallow_io`` and says ``{"i": i, "out": <plain>}`` (the output, or what
:data:`PROJECTIONS` keeps of it; a list / tuple longer than :data:`CHUNK_ITEMS` as ``{"i": i, "seq": "list"|"tuple",
"n": n}`` and then ``{"c": [items]}`` lines) or ``{"i": i, "error": ...}`` (an exception, or an output that is not
plain data; it stops there).  The parent times each answer and compares it; it kills the process when it has seen
enough.

``serve WORKDIR`` (LiveCodeBench): reads one JSON setup line ``{code, mode, fn_name, timeout, memory_bytes,
file_bytes, disk_bytes, tmpfs, max_created, output_cap}``, says ``{"ready": true}`` (or ``{"setup_error": ...}``),
then reads one JSON line per test input, runs each test in a fresh confined child forked from here (a tmpfs of
``disk_bytes`` over WORKDIR holds every test's files) and answers one JSON line per test: ``{status, seconds,
stdout, stderr, result}`` (``result``: the return value in plain data, call mode).

``probe DIR``: exits 0 when a tmpfs can be mounted over DIR here (the parent's capability probe).
"""
from __future__ import annotations

import json
import os
import sys

if __package__:   # imported as prift.sandbox.runner (documentation, tests)
    from prift.sandbox import plain
    from prift.sandbox.confine import AS_DEFAULT, FSIZE_DEFAULT, confine, mount_tmpfs
else:             # python -I .../prift/sandbox/runner.py (-I keeps this directory off sys.path: add it, briefly)
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
    import plain
    from confine import AS_DEFAULT, FSIZE_DEFAULT, confine, mount_tmpfs
    del sys.path[0]   # the program's imports never see the sandbox's own modules by name


def _say(fd: int, msg: dict) -> None:
    data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _prepare_root(root: str, setup: dict) -> str:
    root = os.path.realpath(root)
    if setup.get("tmpfs"):
        mount_tmpfs(root, int(setup["disk_bytes"]))
    os.chdir(root)        # (again) after the mount: the cwd must be on the tmpfs
    return root


def _load_guard(path: str):
    """evalplus's evalplus/eval/utils.py as a module of its own (its package's __init__ would import numpy)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("evalplus_eval_utils", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------------------------------------------
# call mode (evalplus)
# ----------------------------------------------------------------------------------------------------------------

# What of an output crosses: the value itself, or -- for tasks whose reference only asks whether the output is None
# (evalplus's MBPP_OUTPUT_NOT_NONE_TASKS: their outputs, e.g. re.Match objects, are not data) -- a bool as evalplus
# would judge it (a bool output itself, else "is not None").
CHUNK_ITEMS = 1 << 16        # a list / tuple longer than this crosses in chunks (of at most this many items
CHUNK_BYTES = 4 * 1024 ** 2  # and about this many bytes)
PROJECTIONS = {"value": lambda out: out,
               "not_none": lambda out: out if type(out) is bool else out is not None}


def call(root: str) -> None:
    import traceback
    setup = json.loads(sys.stdin.buffer.readline())
    chan = os.dup(1)                          # the answers; the program's own stdout / stderr go nowhere
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, chan)
    os.closerange(chan + 1, 1 << 16)
    try:
        root = _prepare_root(root, setup)
        inputs = plain.decode(setup["inputs"])
        code, entry_point = setup["code"], setup["entry_point"]
        for name in setup.get("preload") or ():   # what the reference harness's process has imported already
            __import__(name)
        guard = _load_guard(setup["guard"]) if setup.get("guard") else None
        if guard is not None:
            guard.reliability_guard(maximum_memory_bytes=setup.get("memory_bytes"))
            swallow_io = guard.swallow_io
        else:
            import contextlib
            swallow_io = contextlib.nullcontext
        applied = confine(root, memory_bytes=None if guard is not None else setup.get("memory_bytes", AS_DEFAULT),
                          cpu_seconds=setup.get("cpu_seconds"), file_bytes=setup.get("file_bytes", FSIZE_DEFAULT),
                          max_created=setup.get("max_created"))
    except BaseException as e:
        _say(chan, {"setup_error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=4)[-2000:]})
        os._exit(3)
    projection = setup.get("project") or "value"
    del setup
    _say(chan, {"ready": applied})
    # bound before the program runs (it may rebind module attributes; it can only ever change its own answers)
    say, dumps, NotPlain, write, exit_ = _say, plain.dumps, plain.NotPlain, os.write, os._exit
    try:
        g: dict = {}
        with swallow_io():
            exec(code, g)
            fn = g[entry_point]
    except BaseException as e:
        say(chan, {"error": type(e).__name__})
        exit_(0)
    say(chan, {"loaded": True})
    project = PROJECTIONS[projection]

    def send(data: bytes) -> None:
        while data:
            data = data[write(chan, data):]

    for i, inp in enumerate(inputs):
        try:
            with swallow_io():
                out = project(fn(*inp))
            if type(out) in (list, tuple) and len(out) > CHUNK_ITEMS:   # a long sequence: in chunks
                send(b'{"i":%d,"seq":"%s","n":%d}\n' % (i, type(out).__name__.encode(), len(out)))
                k, step = 0, 1024
                while k < len(out):   # chunks of about CHUNK_BYTES, so that bytes flow all along
                    data = dumps(list(out[k:k + step])).encode()
                    send(b'{"c":%s}\n' % data)
                    k += step
                    step = max(1, min(CHUNK_ITEMS, step * CHUNK_BYTES // max(len(data), 1)))
            else:
                send(b'{"i":%d,"out":%s}\n' % (i, dumps(out).encode()))
        except NotPlain as e:
            say(chan, {"i": i, "error": f"not plain data: {str(e)[:200]}"})
            exit_(0)
        except BaseException as e:
            say(chan, {"i": i, "error": type(e).__name__})
            exit_(0)
    exit_(0)


# ----------------------------------------------------------------------------------------------------------------
# serve mode (LiveCodeBench)
# ----------------------------------------------------------------------------------------------------------------

# LiveCodeBench runs every program after these imports (and with a recursion limit of 50000); solutions rely on
# them (``deque``, ``gcd``, ``inf``, ... without importing).
LCB_STAR_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                    "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing")
LCB_HEADER = "".join(f"from {m} import *\n" for m in LCB_STAR_MODULES) + \
    "".join(f"import {m}\n" for m in LCB_STAR_MODULES if m not in ("builtins", "typing")) + \
    "sys.setrecursionlimit(50000)\n"


def _child(setup: dict, test_input: str, root: str, out_path: str, err_path: str, res_path: str) -> None:
    """In the forked child: wire stdio to files, confine, run. Never returns."""
    import builtins
    import io
    import traceback
    try:
        fd_in = os.open(os.path.join(root, ".stdin"), os.O_RDONLY)
        fd_out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd_err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd_res = os.open(res_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd_in, 0)
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        os.dup2(fd_res, 3)
        os.closerange(4, 1 << 16)
        sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                                     encoding="utf-8")
        sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                                       encoding="utf-8")
        sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                                       errors="backslashreplace", write_through=True)
        os.chdir(root)
        confine(root, memory_bytes=setup.get("memory_bytes", AS_DEFAULT),
                cpu_seconds=float(setup.get("timeout", 6)) + 1, file_bytes=setup.get("file_bytes", FSIZE_DEFAULT),
                max_created=setup.get("max_created"))
    except BaseException:
        os._exit(97)
    code = setup["code"]
    status = 0
    try:
        src = compile(LCB_HEADER + code, "<solution>", "exec")
        if setup.get("mode") == "call":
            g = {"__name__": "solution", "__builtins__": builtins}
            exec(src, g)
            fn = setup["fn_name"]
            target = g["Solution"]() if "class Solution" in code and "Solution" in g else None
            method = getattr(target, fn) if target is not None else g[fn]
            args = [json.loads(line) for line in test_input.split("\n")]
            data = plain.dumps(method(*args)).encode()
            while data:
                data = data[os.write(3, data):]
        else:
            g = {"__name__": "__main__", "__builtins__": builtins}
            try:
                exec(src, g)
            except SystemExit:
                pass
    except BaseException:
        status = 1
        try:
            traceback.print_exc(limit=3)
        except BaseException:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            status = status or 1
    os._exit(status)


def _wait(pid: int, timeout: float):
    """(wait status or None on timeout, seconds)."""
    import select
    import time
    t0 = time.monotonic()
    try:
        pfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pfd = None
    if pfd is not None:
        try:
            poller = select.poll()
            poller.register(pfd, select.POLLIN)
            poller.poll(max(0, timeout) * 1000)
        finally:
            os.close(pfd)
        done, st = os.waitpid(pid, os.WNOHANG)
        return (st if done else None), time.monotonic() - t0
    delay = 0.0005
    while True:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            return st, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None, time.monotonic() - t0
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def _read(path: str, cap: int) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(cap).decode("utf-8", "replace")
    except OSError:
        return ""


def serve(workdir: str) -> None:
    """Answer the parent's test requests (see the module docstring)."""
    import shutil
    import signal
    import tempfile
    setup = json.loads(sys.stdin.readline())
    timeout = float(setup.get("timeout", 6))
    cap = int(setup.get("output_cap", 16 * 1024 ** 2))
    try:
        workdir = _prepare_root(workdir, setup)
    except OSError as e:
        sys.stdout.write(json.dumps({"setup_error": f"{type(e).__name__}: {e}"}) + "\n")
        sys.stdout.flush()
        sys.exit(3)
    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    import ctypes  # noqa: F401  (so that the confined child never needs to dlopen for it)
    for line in sys.stdin:
        if not line.strip():
            continue
        test_input = json.loads(line)["input"]
        root = tempfile.mkdtemp(prefix="t", dir=workdir)
        with open(os.path.join(root, ".stdin"), "w", encoding="utf-8") as f:
            f.write(test_input)
        side = root + ".io"
        os.mkdir(side)
        out_p, err_p, res_p = (os.path.join(side, n) for n in ("stdout", "stderr", "result"))
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(setup, test_input, root, out_p, err_p, res_p)
        st, secs = _wait(pid, timeout)
        if st is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            reply = {"status": "timeout"}
        elif os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0:
            reply = {"status": "ok"}
        else:
            reply = {"status": "error", "exit": os.WEXITSTATUS(st) if os.WIFEXITED(st) else None,
                     "signal": os.WTERMSIG(st) if os.WIFSIGNALED(st) else None}
        reply["seconds"] = round(secs, 4)
        reply["stdout"] = _read(out_p, cap)
        reply["stderr"] = _read(err_p, 2000)
        reply["result"] = _read(res_p, plain.MAX_BYTES + 1) or None
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(side, ignore_errors=True)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def probe(path: str) -> None:
    mount_tmpfs(path, 1024 * 1024)
    os._exit(0)


if __name__ == "__main__":
    modes = {"call": call, "serve": serve, "probe": probe}
    if len(sys.argv) != 3 or sys.argv[1] not in modes:
        sys.exit(f"usage: python -I runner.py {{{'|'.join(modes)}}} DIR")
    modes[sys.argv[1]](sys.argv[2])
