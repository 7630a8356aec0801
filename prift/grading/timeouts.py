"""Time limits for verdicts (extraction and comparison; exceeding one = not correct).

In the main thread with SIGALRM available an interval timer interrupts the computation in-process (and
:func:`_check_deadline` lets long loops stop early); elsewhere (worker threads, an enclosing timer already armed,
no SIGALRM) the call runs in a spawned worker process that is killed on timeout; inside daemonic processes (which
may not have children) an abandoned daemon thread bounds it.

The functions that run under a limit are named, not passed: a name crosses the process boundary to the worker.
They live in :mod:`prift.grading.equal`, which imports this module, so they are resolved lazily by
:func:`_resolve` (an import at call time, no import cycle); being a module-attribute lookup, it also honours a
monkeypatched ``prift.grading.equal._math_equal_impl``.
"""

from __future__ import annotations

import atexit
import importlib
import multiprocessing
import signal
import threading
import time
from typing import Any, Callable


class _Timeout(BaseException):
    """Raised when a comparison runs out of time (BaseException: not swallowed
    by the ``except Exception`` clauses around parsing)."""


_tls = threading.local()


def _check_deadline() -> None:
    dl = getattr(_tls, "deadline", None)
    if dl is not None and time.monotonic() > dl:
        raise _Timeout()


def _signal_usable() -> bool:
    if not hasattr(signal, "setitimer") or not hasattr(signal, "SIGALRM"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        # another timer is running (e.g. an enclosing alarm): do not clobber it
        return signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    except Exception:
        return False


# --- the functions that may run under a time limit ----------------------------

_WORKER_MODULE = "prift.grading.equal"
_WORKER_FUNCS = ("_math_equal_impl", "_math_grade_impl", "_math_verify_impl")


def _resolve(name: str) -> Callable[..., Any]:
    """The function ``name`` of :data:`_WORKER_FUNCS`, looked up in :data:`_WORKER_MODULE` at call time."""
    if name not in _WORKER_FUNCS:
        raise ValueError(f"unknown worker function {name!r}")
    return getattr(importlib.import_module(_WORKER_MODULE), name)


def _run_with_signal_timeout(name: str, args: tuple, timeout: float) -> Any:
    fn = _resolve(name)

    def _handler(signum, frame):  # noqa: ARG001
        raise _Timeout()

    try:
        old = signal.signal(signal.SIGALRM, _handler)
    except (ValueError, OSError):  # not allowed here after all: use a worker process
        return _run_in_worker(name, args, timeout)
    _tls.deadline = time.monotonic() + timeout
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        _tls.deadline = None
        signal.signal(signal.SIGALRM, old)


# --- subprocess fallback (worker threads, no SIGALRM, nested timers) ---------

def _worker_main(conn) -> None:  # pragma: no cover - runs in a child process
    try:  # warm up the heavy imports before announcing readiness
        import sympy  # noqa: F401
        import latex2sympy2_extended  # noqa: F401

        try:
            import math_verify  # noqa: F401
        except Exception:
            pass
    except Exception:
        pass
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        name, args = msg
        try:
            res = _resolve(name)(*args)  # resolved in this (spawned) process
            conn.send(("ok", res))
        except Exception as e:  # noqa: BLE001
            conn.send(("err", repr(e)))


class _Worker:
    _START_LIMIT = 120.0  # seconds allowed for the child's imports

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False

    def _wait_ready(self) -> None:
        if self.ready:
            return
        if not self.conn.poll(self._START_LIMIT):
            self.kill()
            raise RuntimeError("grading worker did not start")
        tag, _ = self.conn.recv()
        if tag != "ready":
            self.kill()
            raise RuntimeError("grading worker did not start")
        self.ready = True

    def call(self, name: str, args: tuple, timeout: float | None) -> Any:
        self._wait_ready()
        self.conn.send((name, args))
        if not self.conn.poll(timeout):
            self.kill()
            raise _Timeout()
        tag, val = self.conn.recv()
        if tag != "ok":
            raise RuntimeError(val)
        return val

    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(5)
        except Exception:
            pass
        try:
            self.conn.close()
        except Exception:
            pass


_pool_lock = threading.Lock()
_idle_workers: list[_Worker] = []
_all_workers: list[_Worker] = []


def _run_in_thread(name: str, args: tuple, timeout: float | None) -> Any:
    """Last-resort timeout (e.g. inside a daemonic process, which may not have
    children): a daemon thread that is abandoned, not killed, on timeout."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["res"] = _resolve(name)(*args)
        except BaseException as e:  # noqa: BLE001
            box["err"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        raise _Timeout()
    if "err" in box:
        raise box["err"]
    return box.get("res")


def _run_in_worker(name: str, args: tuple, timeout: float | None) -> Any:
    if multiprocessing.current_process().daemon:
        return _run_in_thread(name, args, timeout)
    with _pool_lock:
        w = None
        while _idle_workers:
            cand = _idle_workers.pop()
            if cand.alive():
                w = cand
                break
        if w is None:
            w = _Worker()
            _all_workers.append(w)
    try:
        res = w.call(name, args, timeout)
    except _Timeout:
        with _pool_lock:
            if w in _all_workers:
                _all_workers.remove(w)
        raise
    except BaseException:
        w.kill()
        with _pool_lock:
            if w in _all_workers:
                _all_workers.remove(w)
        raise
    with _pool_lock:
        _idle_workers.append(w)
    return res


@atexit.register
def _shutdown_workers() -> None:
    with _pool_lock:
        ws = list(_all_workers)
        _all_workers.clear()
        _idle_workers.clear()
    for w in ws:
        try:
            w.conn.send(None)
        except Exception:
            pass
        w.kill()


def _call_with_timeout(name: str, args: tuple, timeout: float | None) -> Any:
    """Run ``_resolve(name)(*args)``; raise :class:`_Timeout` past ``timeout``.

    In the main thread with SIGALRM available an interval timer interrupts
    the computation in-process; elsewhere (worker threads, an enclosing timer
    already armed, no SIGALRM) the call runs in a spawned worker process that
    is killed on timeout.
    """
    fn = _resolve(name)
    if timeout is None or timeout <= 0:
        return fn(*args)
    if getattr(_tls, "deadline", None) is not None:
        # already inside a timed region of this package: it bounds us
        return fn(*args)
    if _signal_usable():
        return _run_with_signal_timeout(name, args, timeout)
    return _run_in_worker(name, args, timeout)
