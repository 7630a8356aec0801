"""Untrusted, model-generated Python code (HumanEval+ / MBPP+, LiveCodeBench): run it where it cannot reach the
grader, and decide the verdict outside.

The split.  The untrusted code runs in the sandbox's *runner* (:mod:`prift.sandbox.runner`), a fresh
``python -I`` process that is given the code and the test inputs -- never an expected output or a canonical
solution -- and answers with the program's outputs as *plain data* (:mod:`prift.sandbox.plain`: JSON of None,
bool, int, float, str, list, tuple, dict, set, complex, ... rebuilt outside from trusted types only; anything else,
e.g. an object whose ``__eq__`` is always true, is a failure).  The parent -- which never imports or runs the
untrusted code -- times every answer, compares it with the expected output it holds, and kills the runner when it
has seen enough.  So the program can neither compare for itself, nor find the expected outputs on the stack, nor
patch the comparison's libraries: none of them is in its process.

What the runner can reach:

* environment: :func:`scrubbed_env` only (PATH, locale, HOME and TMPDIR = its own directory, one-thread BLAS) on
  every path -- no data paths, caches or credentials;
* files: it may write only beneath its own directory and read only beneath it and :func:`read_roots` (the Python
  installation, the system's shared libraries): not the benchmark data, the ground-truth cache, the grader's work
  directory, other processes' ``/proc`` entries (memory, environment) -- Landlock where the kernel has it, the audit
  hook besides (:mod:`prift.sandbox.confine`); :func:`assert_unreadable` checks a grader's secrets are outside the
  read roots;
* disk: a tmpfs of :data:`DISK_DEFAULT` (64 MiB) mounted over its directory in a user + mount namespace of its own
  (``unshare -rm``, unprivileged where user namespaces are enabled) bounds everything a sample writes; where that is
  not possible, RLIMIT_FSIZE (:data:`FSIZE_DEFAULT`, 16 MiB per file) and a cap of :data:`CREATED_DEFAULT` files the
  audit hook lets it create bound it (:func:`describe` says which);
* network: an empty network namespace (``unshare -n``) where possible; Landlock / seccomp / the audit hook deny
  sockets in any case;
* processes: no fork / exec / signals to others (seccomp, the audit hook), rlimits on memory and CPU.

None of this is a substitute for a VM when facing a determined adversary with native code; it makes sure a model's
program cannot fake a pass, see the answers, or change anything outside its directory.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prift.sandbox import plain
from prift.sandbox.confine import (AS_DEFAULT, CREATED_DEFAULT, DISK_DEFAULT, FSIZE_DEFAULT, beneath, confine,
                                   landlock_abi, read_roots, seccomp_arch)
from prift.sandbox.plain import NotPlain

RUNNER = str(Path(__file__).resolve().parent / "runner.py")

__all__ = ["AS_DEFAULT", "CREATED_DEFAULT", "DISK_DEFAULT", "FSIZE_DEFAULT", "NotPlain", "RUNNER", "assert_unreadable",
           "capabilities", "confine", "describe", "disk_setup", "plain", "read_roots", "run_calls", "runner_command",
           "scrubbed_env"]

_CAPS: dict | None = None


def capabilities() -> dict:
    """Which confinement layers this machine supports (probed once per process): ``unshare`` (its path), ``netns``
    and ``tmpfs`` (an empty network namespace / a tmpfs in a mount namespace, both unprivileged), ``landlock_abi``,
    ``seccomp``, ``audit_hook``, ``rlimits``. ``PRIFT_SANDBOX_NO_NETNS=1`` / ``PRIFT_SANDBOX_NO_TMPFS=1`` turn the
    namespaces off."""
    global _CAPS
    if _CAPS is None:
        exe = shutil.which("unshare")

        def works(cmd) -> bool:
            try:
                return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.SubprocessError):
                return False

        netns = bool(exe) and os.environ.get("PRIFT_SANDBOX_NO_NETNS") != "1" and works([exe, "-rn", "true"])
        tmpfs = False
        if exe and os.environ.get("PRIFT_SANDBOX_NO_TMPFS") != "1":
            with tempfile.TemporaryDirectory(prefix="prift-probe-") as d:
                tmpfs = works([exe, "-rm", sys.executable, "-I", RUNNER, "probe", d])
        _CAPS = {"unshare": exe, "netns": netns, "tmpfs": tmpfs, "landlock_abi": landlock_abi(),
                 "seccomp": seccomp_arch(), "audit_hook": hasattr(sys, "addaudithook"),
                 "rlimits": sys.platform != "win32"}
    return _CAPS


def describe(net_isolation: bool = True) -> str:
    """The layers a sandboxed program gets on this machine, e.g. 'rlimits+netns+tmpfs(64MiB)+landlock(abi 7)+
    seccomp(x86_64)+audit-hook' (recorded with the grades)."""
    c = capabilities()
    parts = ["rlimits"] if c["rlimits"] else []
    if net_isolation and c["netns"]:
        parts.append("netns")
    parts.append(f"tmpfs({DISK_DEFAULT >> 20}MiB)" if c["tmpfs"]
                 else f"fsize({FSIZE_DEFAULT >> 20}MiB)x{CREATED_DEFAULT}files")
    if c["landlock_abi"]:
        parts.append(f"landlock(abi {c['landlock_abi']})")
    if c["seccomp"]:
        parts.append(f"seccomp({c['seccomp']})")
    if c["audit_hook"]:
        parts.append("audit-hook")
    return "+".join(parts)


def scrubbed_env(home: str | Path) -> dict:
    """The whole environment of a sandboxed program: nothing of the grader's."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(home),
            "TMPDIR": str(home), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def disk_setup() -> dict:
    """What the runner needs to know to bound a sample's disk (see the package docstring)."""
    tmpfs = capabilities()["tmpfs"]
    return {"tmpfs": tmpfs, "disk_bytes": DISK_DEFAULT, "file_bytes": FSIZE_DEFAULT,
            "max_created": None if tmpfs else CREATED_DEFAULT}


def runner_command(mode: str, directory: str | Path, net_isolation: bool = True) -> list[str]:
    """The command that starts the runner in ``mode`` ('call' or 'serve') on ``directory``: in a user namespace
    with its own mount namespace (for the tmpfs) and network namespace, where this machine allows them."""
    c = capabilities()
    flags = ("m" if c["tmpfs"] else "") + ("n" if net_isolation and c["netns"] else "")
    prefix = [c["unshare"], "-r" + flags] if flags else []
    return [*prefix, sys.executable, "-I", RUNNER, mode, str(directory)]


def assert_unreadable(*paths) -> None:
    """Raise when one of the grader's ``paths`` (data, caches, work directories) lies beneath a read root of the
    sandbox -- an installation layout in which a program could read the answers."""
    roots = read_roots()
    bad = [str(p) for p in paths if p and beneath(str(p), roots)]
    if bad:
        raise RuntimeError(f"sandbox: {', '.join(bad)} would be readable by sandboxed programs (read roots: "
                           f"{', '.join(roots)}); keep the grader's data outside the Python installation")


# ----------------------------------------------------------------------------------------------------------------
# call mode: the parent's side
# ----------------------------------------------------------------------------------------------------------------

class _Lines:
    """Newline-terminated messages from a pipe, each read before a deadline and capped in size."""

    def __init__(self, fd: int, cap: int):
        self.fd, self.cap, self.buf, self.scanned, self.eof = fd, cap, bytearray(), 0, False

    def read(self, deadline: float, grant: float = 0.0, latest: float = float("inf")) -> bytes | None:
        """The next line; None at the deadline or at end of file (``eof`` tells which); ValueError past the cap.
        ``grant``: seconds by which every byte received moves the deadline, up to ``latest``."""
        while True:
            i = self.buf.find(b"\n", self.scanned)
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                self.scanned = 0
                return line
            self.scanned = len(self.buf)
            if self.scanned > self.cap:
                raise ValueError(f"message longer than {self.cap} bytes")
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                self.eof = True
            self.buf.extend(chunk)
            deadline = min(deadline + grant * len(chunk), latest)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    proc.wait()


def run_calls(code: str, entry_point: str, inputs_json: str, time_limits: list[float], judge, *,
              total_limit: float, workdir: str | Path, guard: str | None = None, preload: tuple = (),
              project: str = "value", memory_bytes: int | None = AS_DEFAULT, net_isolation: bool = True,
              startup_limit: float = 120.0) -> dict:
    """Run ``entry_point`` of ``code`` on each input in the runner and judge every answer here.

    ``inputs_json``: ``plain.dumps(inputs)`` (a list of argument lists); ``judge(i, output) -> bool`` decides
    whether output ``i`` (plain data) is right; a judge may also offer ``judge.chunked(i, kind, n)`` -> an object
    with ``add(items) -> bool`` (False: wrong already) and ``verdict() -> bool``, or None, to judge a long list /
    tuple as it arrives in chunks (without it, the chunks are put together first).

    Time: each call gets ``time_limits[i]`` seconds, counted from when the previous answer was judged (from when the
    code was loaded, for the first) to the first line of its answer; the chunks of a long answer get as long again
    plus a second per :data:`TRANSFER_RATE` bytes; the time this process spends parsing and judging answers is not
    counted; the whole run, top-level code included, gets ``total_limit`` seconds from when the runner is ready.

    ``guard``: the path of evalplus's ``eval/utils.py`` (its ``reliability_guard`` and ``swallow_io`` are applied);
    ``preload``: modules the runner imports before the guard (the guard breaks their import; the reference harness
    has them loaded); ``project``: what of each output crosses ('value', or 'not_none': the runner's
    ``PROJECTIONS``).

    Returns ``{status, n_passed, detail}``, status in evalplus's words: ``pass``; ``fail`` (an exception, an output
    that is not plain data, a wrong output, a call past its limit); ``timeout`` (the run past ``total_limit``, or a
    runner that ended without answering -- evalplus's status for a child that ends without a verdict)."""
    root = tempfile.mkdtemp(prefix="c", dir=str(workdir))
    setup = {"code": code, "entry_point": entry_point, "guard": guard, "preload": list(preload), "project": project,
             "memory_bytes": memory_bytes, "cpu_seconds": total_limit + 2, **disk_setup()}
    head = json.dumps(setup)[:-1] + ',"inputs":'
    proc = subprocess.Popen(runner_command("call", root, net_isolation), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=scrubbed_env(root), cwd=root,
                            start_new_session=True)
    try:
        try:
            proc.stdin.write(head.encode() + inputs_json.encode() + b"}\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        lines = _Lines(proc.stdout.fileno(), plain.MAX_BYTES + 256)
        first = lines.read(time.monotonic() + startup_limit)
        try:
            msg = json.loads(first) if first else {}
        except ValueError:
            msg = {}
        if "ready" not in msg:
            _kill(proc)
            err = proc.stderr.read(4000).decode(errors="replace")
            raise RuntimeError(f"sandbox runner did not start: {msg.get('setup_error') or 'no answer'}\n"
                               f"{msg.get('trace', '')}{err}")
        return _Answers(lines, judge, time_limits, total_limit).judge_all()
    finally:
        if proc.poll() is None:
            _kill(proc)
        else:
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        shutil.rmtree(root, ignore_errors=True)


def _safely(fn, *args) -> bool:
    """A judge's answer; a judge that cannot compare (raises) says: not equal."""
    try:
        return bool(fn(*args))
    except Exception:   # noqa: BLE001
        return False


class _Late(Exception):
    """An answer that did not come in time: ``status`` is 'fail' (a call past its own limit) or 'timeout'."""

    def __init__(self, status: str, why: str):
        super().__init__(why)
        self.status, self.why = status, why


TRANSFER_RATE = 25 * 1024 ** 2   # bytes a second a runner is granted for writing a long answer (it manages ~90 MB/s)


class _Answers:
    """The parent's side of call mode after 'ready': read, time and judge the runner's answers (see run_calls)."""

    def __init__(self, lines: _Lines, judge, time_limits: list[float], total_limit: float):
        self.lines, self.judge, self.limits = lines, judge, time_limits
        self.overall = time.monotonic() + total_limit
        self.deadline = self.overall

    def _next(self, grant: float = 0.0) -> dict:
        """The next message before the current deadline (moved by ``grant`` seconds a byte received), parsed (parsing
        not counted against the program); _Late / ValueError (bad or too long)."""
        line = self.lines.read(self.deadline, grant, self.overall)
        self.deadline = min(self.deadline + grant * len(line or b""), self.overall)
        if line is None:
            if self.lines.eof:
                raise _Late("timeout", "ended without answering")
            raise _Late("timeout" if self.deadline >= self.overall else "fail", "time limit")
        t0 = time.monotonic()
        msg = json.loads(line)
        self._not_counted(t0)
        if type(msg) is not dict:
            raise ValueError("bad answer")
        return msg

    def _not_counted(self, t0: float) -> None:
        """Time this process spent since ``t0`` does not count against the program."""
        spent = time.monotonic() - t0
        self.deadline += spent
        self.overall += spent

    def _chunked(self, i: int, head: dict, limit: float) -> bool:
        """Output ``i`` in chunks after its ``head``; their transfer has a time limit of its own: ``limit`` and a
        second for every :data:`TRANSFER_RATE` bytes received (writing 10^8 strings as JSON takes longer than
        computing them; only an output as long as the expected one can pass, so this bounds the allowance)."""
        kind, n = head.get("seq"), head.get("n")
        if kind not in ("list", "tuple") or type(n) is not int or n < 0:
            raise ValueError("bad chunked answer")
        self.deadline = min(time.monotonic() + limit, self.overall)
        chunked = getattr(self.judge, "chunked", None)
        check = chunked(i, kind, n) if chunked is not None else None
        items, got, ok = [], 0, True
        while got < n:
            msg = self._next(grant=1.0 / TRANSFER_RATE)
            t0 = time.monotonic()
            chunk = plain.decode(msg.get("c"))
            if type(chunk) is not list or not chunk or got + len(chunk) > n:
                raise ValueError("bad chunk")
            got += len(chunk)
            if check is not None:
                ok = _safely(check.add, chunk)
            else:
                items.extend(chunk)
            self._not_counted(t0)
            if not ok:
                return False
        if check is not None:
            return _safely(check.verdict)
        return _safely(self.judge, i, tuple(items) if kind == "tuple" else items)

    def judge_all(self) -> dict:
        def finish(status: str, n_ok: int, **detail) -> dict:
            return {"status": status, "n_passed": n_ok, "detail": detail or None}

        n_ok = 0
        try:
            msg = self._next()
            if not msg.get("loaded"):
                return finish("fail", 0, why=str(msg.get("error", "no entry point"))[:300])
            for i, limit in enumerate(self.limits):
                self.deadline = min(time.monotonic() + limit, self.overall)
                msg = self._next()
                if msg.get("i") != i or ("out" not in msg and "seq" not in msg):
                    return finish("fail", n_ok, test=i, why=str(msg.get("error", "no output"))[:300])
                t0 = time.monotonic()
                if "seq" in msg:
                    ok = self._chunked(i, msg, limit)
                else:
                    ok = _safely(self.judge, i, plain.decode(msg["out"]))
                self._not_counted(t0)
                if not ok:
                    return finish("fail", n_ok, test=i, why="wrong output")
                n_ok += 1
            return finish("pass", n_ok)
        except _Late as e:
            return finish(e.status, n_ok, test=n_ok, why=e.why)
        except (ValueError, RecursionError) as e:   # NotPlain, bad JSON, a message past the cap
            return finish("fail", n_ok, test=n_ok, why=f"answer is not plain data: {str(e)[:200]}")
