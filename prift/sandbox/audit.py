"""Layer 4 of the sandbox (:mod:`prift.sandbox.confine`): a Python audit hook with the file-system (reads
included) / process / network policy of Landlock and seccomp at the interpreter level (it raises PermissionError),
which also forbids ctypes and gc introspection (the ways to reach the hook itself) and, where no tmpfs bounds the
root, caps the number of files the program creates.

Standard library only, imported by confine.py both as prift.sandbox.audit and script-side (the runner).
"""
from __future__ import annotations

import os


def audit_hook(root: str, readable: list[str], max_created: int | None):
    """The hook only uses names bound in this closure (never module globals or patchable builtins)."""
    import posix
    import stat as _stat
    _getcwd, _readlink, _stat_fn, _fsdecode, _fspath = posix.getcwd, posix.readlink, posix.stat, os.fsdecode, os.fspath
    _isinstance, _int, _str, _bytes, _PermissionError = isinstance, int, str, bytes, PermissionError
    _len, _any, _tuple, _Exception = len, any, tuple, Exception
    _S_ISDIR = _stat.S_ISDIR
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    O_CREAT = os.O_CREAT
    root = root.rstrip("/") or "/"
    prefix = root + "/"
    read_prefixes = _tuple(r.rstrip("/") + "/" for r in readable)
    read_exact = frozenset(readable)
    created = [0]
    blocked = frozenset({
        "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.startfile",
        "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit",
        "resource.prlimit", "os.symlink", "os.link", "os.chown", "os.chflags", "os.lchflags", "os.setxattr",
        "os.removexattr", "os.mknod", "os.mkfifo", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "sys.setprofile", "sys.settrace", "os.chroot", "pty.spawn", "webbrowser.open", "os.setns", "os.unshare"})
    path_events = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,), "os.utime": (0,),
                   "os.truncate": (0,), "shutil.rmtree": (0,), "os.rename": (0, 1)}

    def norm(p: str) -> str:
        parts: list = []
        for seg in p.split("/"):
            if seg in ("", "."):
                continue
            if seg == "..":
                if parts:
                    parts.pop()
            else:
                parts.append(seg)
        return "/" + "/".join(parts)

    def resolve(path, dir_fd=None) -> str:
        if path is None:
            return norm(_getcwd())
        if _isinstance(path, _int):
            return norm(_readlink(f"/proc/self/fd/{path}"))
        p = _fspath(path)
        if _isinstance(p, _bytes):
            p = _fsdecode(p)
        if not p.startswith("/"):
            base = _readlink(f"/proc/self/fd/{dir_fd}") if _isinstance(dir_fd, _int) and dir_fd >= 0 else _getcwd()
            p = base + "/" + p
        return norm(p)

    def inside(p: str) -> bool:
        return p == root or p.startswith(prefix)

    def readable_path(p: str) -> bool:
        return inside(p) or p in read_exact or p.startswith(read_prefixes)

    def exists(p: str) -> bool:
        try:
            _stat_fn(p)
            return True
        except _Exception:
            return False

    def deny(event):
        raise _PermissionError(f"sandbox: {event} is not allowed")

    def count_creation(p: str) -> None:
        if max_created is None or exists(p):
            return
        if created[0] >= max_created:
            deny(f"creating more than {max_created} files ({p})")
        created[0] += 1

    def hook(event: str, args: tuple) -> None:
        if event in blocked or event.startswith(("socket.", "ctypes.")):
            deny(event)
        if event == "object.__setattr__" and _len(args) > 1 and args[1] in ("__code__", "__closure__"):
            deny(event)
        if event == "open":
            path, mode, flags = (_tuple(args) + (None, None, None))[:3]
            if path is None or _isinstance(path, _int):
                return
            wants_write = (_isinstance(flags, _int) and flags & write_flags) or \
                (_isinstance(mode, _str) and _any(c in mode for c in "wax+"))
            creates = (_isinstance(flags, _int) and flags & O_CREAT) or \
                (_isinstance(mode, _str) and _any(c in mode for c in "wax"))
            try:
                p = resolve(path)
            except _Exception:
                deny(event)
            if inside(p):
                if creates:
                    count_creation(p)
                return
            if p == "/dev/null":
                return
            if wants_write:
                deny(f"writing {p}")
            if not readable_path(p):
                deny(f"reading {p}")
            try:   # a directory fd outside the root could serve as dir_fd for a write the event does not show
                if _S_ISDIR(_stat_fn(p).st_mode):
                    deny(f"opening directory {p}")
            except _PermissionError:
                raise
            except _Exception:
                pass
            return
        if event in ("os.listdir", "os.scandir"):
            try:
                p = resolve(args[0] if _len(args) else None)
            except _Exception:
                deny(event)
            if not readable_path(p):
                deny(f"listing {p}")
            return
        idx = path_events.get(event)
        if idx is not None:
            for i in idx:
                if i >= _len(args):
                    continue
                dir_fd = None
                if event == "os.rename":
                    dir_fd = args[2 + i] if _len(args) > 2 + i else None
                elif _len(args) > 1 and event in ("os.remove", "os.rmdir", "shutil.rmtree"):
                    dir_fd = args[1]
                elif event in ("os.mkdir", "os.chmod") and _len(args) > 2:
                    dir_fd = args[2]
                elif event == "os.utime" and _len(args) > 3:
                    dir_fd = args[3]
                try:
                    p = resolve(args[i], dir_fd)
                except _Exception:
                    deny(event)
                if not inside(p):
                    deny(f"{event} {p}")
                if event == "os.mkdir":
                    count_creation(p)
    return hook


