"""The confinement layers a process applies to itself before it runs untrusted code (:func:`confine`).

Standard library only: the sandbox's runner imports this file as a script-side module.  The layers, each applied
where the platform offers it (:func:`landlock_abi`, :func:`seccomp_arch`):

1. rlimits: address space, CPU seconds, size of any one file written (stdout included), no core dumps;
2. Landlock (Linux >= 5.13): files may be written, created, renamed or removed only beneath the root; files and
   directories may be *read* only beneath the root and the read-only roots (:func:`read_roots`: the Python
   installation and the system's shared libraries -- never the grader's data, caches or /proc); TCP bind/connect
   denied (ABI >= 4); no signals to, or abstract sockets of, processes outside the sandbox (ABI >= 6);
3. seccomp-bpf (x86_64, aarch64): no new processes (threads are allowed), no execve, no new socket, no io_uring,
   no ptrace / process_vm_*, no kill of another process, no chmod/chown, no mount API, namespaces, chroot, reboot,
   open_by_handle_at, bpf, perf events, userfaultfd, keyrings or memfd;
4. a Python audit hook (:mod:`prift.sandbox.audit`) with the same file-system (reads included) / process / network policy at the interpreter
   level (it raises PermissionError), which also forbids ctypes and gc introspection (the ways to reach the hook
   itself) and, where no tmpfs bounds the root, caps the number of files the program creates.

As root (also root of a user namespace), file-system confinement rests on Landlock and the audit hook alone.
"""
from __future__ import annotations

import os
import sys

if __package__:   # prift.sandbox.confine
    from prift.sandbox.audit import audit_hook
else:             # the runner's script-side import (its directory briefly on sys.path)
    from audit import audit_hook

try:   # bound now: evalplus's reliability_guard later puts None in sys.modules["resource"]
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None

AS_DEFAULT = 4 * 1024 ** 3          # evalplus's EVALPLUS_MAX_MEMORY_BYTES default
FSIZE_DEFAULT = 16 * 1024 ** 2      # any one file a program writes, its stdout included
DISK_DEFAULT = 64 * 1024 ** 2       # everything a sample writes (the tmpfs over its root)
CREATED_DEFAULT = 8                 # files / directories a program may create where no tmpfs bounds its root

# the system's read-only roots (besides the Python installation's own directories)
SYSTEM_READ_ROOTS = ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib", "/lib64", "/usr/share/zoneinfo",
                     "/sys/devices/system/cpu", "/etc/ld.so.cache", "/etc/localtime", "/dev/null", "/dev/zero",
                     "/dev/urandom")


def read_roots() -> list[str]:
    """Paths (resolved, existing) beneath which a confined program may read: this interpreter's standard library
    and site-packages, and :data:`SYSTEM_READ_ROOTS`. Never "/" (a layout that would make it so is refused)."""
    import sysconfig
    paths = sysconfig.get_paths()
    candidates = [paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")] + list(SYSTEM_READ_ROOTS)
    out: list[str] = []
    for p in candidates:
        if not p or not os.path.exists(p):
            continue
        r = os.path.realpath(p)
        if r == "/":
            raise RuntimeError(f"sandbox: read root {p!r} resolves to '/': the sandbox would hide nothing")
        if r not in out:
            out.append(r)
    return out


def beneath(path: str, roots) -> bool:
    """Whether ``path`` (resolved) is one of ``roots`` or lies beneath one."""
    p = os.path.realpath(path)
    return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)


# ----------------------------------------------------------------------------------------------------------------
# probes
# ----------------------------------------------------------------------------------------------------------------

def _libc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    libc.mount.restype = ctypes.c_int
    return libc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    if sys.platform != "linux":
        return 0
    try:
        import ctypes
        r = _libc().syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # landlock_create_ruleset(VERSION)
        return max(int(r), 0)
    except Exception:
        return 0


def seccomp_arch() -> str | None:
    m = os.uname().machine if hasattr(os, "uname") else ""
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(m) \
        if sys.platform == "linux" and sys.byteorder == "little" else None


def mount_tmpfs(path: str, size_bytes: int) -> None:
    """Mount a tmpfs of ``size_bytes`` over ``path`` (needs CAP_SYS_ADMIN in the mount namespace's owner: the root
    of an ``unshare -rm`` namespace has it). Raises OSError."""
    import ctypes
    opts = f"size={int(size_bytes)},mode=0700".encode()
    MS_NOSUID, MS_NODEV = 2, 4
    if _libc().mount(b"tmpfs", os.fsencode(path), b"tmpfs", ctypes.c_ulong(MS_NOSUID | MS_NODEV), opts) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount tmpfs on {path}: {os.strerror(e)}")


# ----------------------------------------------------------------------------------------------------------------
# layer 1: rlimits
# ----------------------------------------------------------------------------------------------------------------

def _set_rlimits(memory_bytes, cpu_seconds, file_bytes) -> None:
    def lim(which, value):
        try:
            soft, hard = resource.getrlimit(which)
            v = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (v, v))
        except (ValueError, OSError):
            pass
    if memory_bytes:
        lim(resource.RLIMIT_AS, int(memory_bytes))
    if cpu_seconds:
        lim(resource.RLIMIT_CPU, int(cpu_seconds))
    if file_bytes:
        lim(resource.RLIMIT_FSIZE, int(file_bytes))
    lim(resource.RLIMIT_CORE, 0)


# ----------------------------------------------------------------------------------------------------------------
# layer 2: Landlock
# ----------------------------------------------------------------------------------------------------------------

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE = 1 << 14


def _landlock(root: str, readable: list[str]) -> bool:
    import ctypes
    abi = landlock_abi()
    if abi < 1:
        return False
    libc = _libc()
    fs = 0
    for bit in range(13):                    # EXECUTE, WRITE/READ_FILE, READ_DIR, REMOVE_*, MAKE_*
        fs |= 1 << bit
    if abi >= 2:
        fs |= 1 << 13                        # REFER (rename/link across directories)
    if abi >= 3:
        fs |= _TRUNCATE
    net = (1 << 0) | (1 << 1) if abi >= 4 else 0      # BIND_TCP, CONNECT_TCP: handled, never granted
    scoped = (1 << 0) | (1 << 1) if abi >= 6 else 0   # ABSTRACT_UNIX_SOCKET, SIGNAL
    file_write = _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0)

    class Attr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class Beneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    attr = Attr(fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    rs = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rs < 0:
        return False

    def allow(path: str, rights: int) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_PATH", 0) | os.O_CLOEXEC)
        except OSError:
            return True                      # gone since read_roots(): nothing to grant
        try:
            if not os.path.isdir(path):      # a file rule may carry file rights only
                rights &= _EXECUTE | _READ_FILE | file_write
            rule = Beneath(rights, fd)
            return libc.syscall(445, ctypes.c_int(rs), ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0)) == 0
        finally:
            os.close(fd)

    try:
        if not allow(root, fs):
            return False
        for p in readable:
            if not allow(p, _EXECUTE | _READ_FILE | _READ_DIR | (file_write if p == "/dev/null" else 0)):
                return False
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return False
        return libc.syscall(446, ctypes.c_int(rs), ctypes.c_uint32(0)) == 0   # landlock_restrict_self
    finally:
        os.close(rs)


# ----------------------------------------------------------------------------------------------------------------
# layer 3: seccomp-bpf
# ----------------------------------------------------------------------------------------------------------------

# syscall numbers (asm-generic for aarch64); "deny" → EPERM, clone/socket/kill/tgkill get argument checks
_SYSCALLS = {
    "x86_64": {"arch": 0xC000003E, "clone": 56, "clone3": 435, "socket": 41, "kill": 62, "tgkill": 234,
               "deny": [57, 58, 59, 322,            # fork vfork execve execveat
                        101, 310, 311, 424, 438,    # ptrace process_vm_readv/writev pidfd_send_signal pidfd_getfd
                        200, 425, 426, 427,         # tkill io_uring_setup/enter/register
                        272, 308, 165, 166, 155, 161, 169,  # unshare setns mount umount2 pivot_root chroot reboot
                        428, 429, 430, 431, 432, 433, 442,  # open_tree move_mount fsopen fsconfig fsmount fspick
                                                            # mount_setattr
                        303, 304,                   # name_to_handle_at open_by_handle_at
                        321, 298, 323, 319,         # bpf perf_event_open userfaultfd memfd_create
                        248, 249, 250,              # add_key request_key keyctl
                        90, 91, 268, 452,           # chmod fchmod fchmodat fchmodat2
                        92, 93, 94, 260]},          # chown fchown lchown fchownat
    "aarch64": {"arch": 0xC00000B7, "clone": 220, "clone3": 435, "socket": 198, "kill": 129, "tgkill": 131,
                "deny": [221, 281,                  # execve execveat
                         117, 270, 271, 424, 438,   # ptrace process_vm_readv/writev pidfd_send_signal pidfd_getfd
                         130, 425, 426, 427,        # tkill io_uring_setup/enter/register
                         97, 268, 40, 39, 41, 51, 142,  # unshare setns mount umount2 pivot_root chroot reboot
                         428, 429, 430, 431, 432, 433, 442,  # the new mount API, mount_setattr
                         264, 265,                  # name_to_handle_at open_by_handle_at
                         280, 241, 282, 279,        # bpf perf_event_open userfaultfd memfd_create
                         217, 218, 219,             # add_key request_key keyctl
                         52, 53, 452, 54, 55]},     # fchmod fchmodat fchmodat2 fchownat fchown
}


def _seccomp() -> bool:
    import ctypes
    arch = seccomp_arch()
    if arch is None:
        return False
    t = _SYSCALLS[arch]
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, KILL = 0x7FFF0000, 0x80000000
    EPERM, EACCES, ENOSYS = 1, 13, 38

    def err(e):
        return 0x00050000 | e
    ARG0 = 16  # low 32 bits of args[0] (little endian)
    me = os.getpid()
    p = [(LD, 0, 0, 4), (JEQ, 1, 0, t["arch"]), (RET, 0, 0, KILL), (LD, 0, 0, 0)]
    if arch == "x86_64":
        p += [(JGE, 0, 1, 0x40000000), (RET, 0, 0, KILL)]   # the x32 ABI
    for nr in t["deny"]:
        p += [(JEQ, 0, 1, nr), (RET, 0, 0, err(EPERM))]
    p += [(JEQ, 0, 1, t["clone3"]), (RET, 0, 0, err(ENOSYS))]   # glibc falls back to clone()
    p += [(JEQ, 0, 4, t["clone"]), (LD, 0, 0, ARG0), (JSET, 0, 1, 0x00010000),  # CLONE_THREAD
          (RET, 0, 0, ALLOW), (RET, 0, 0, err(EPERM))]
    p += [(JEQ, 0, 1, t["socket"]), (RET, 0, 0, err(EACCES))]               # no new socket of any family
    for nr in (t["kill"], t["tgkill"]):                                       # only to itself
        p += [(JEQ, 0, 4, nr), (LD, 0, 0, ARG0), (JEQ, 0, 1, me), (RET, 0, 0, ALLOW), (RET, 0, 0, err(EPERM))]
    p += [(RET, 0, 0, ALLOW)]

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Filter))]

    arr = (Filter * len(p))(*[Filter(*ins) for ins in p])
    prog = Prog(len(p), arr)
    libc = _libc()
    if libc.prctl(38, 1, 0, 0, 0) != 0:                    # PR_SET_NO_NEW_PRIVS
        return False
    return libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


# ----------------------------------------------------------------------------------------------------------------
# confine: all layers, irreversible
# ----------------------------------------------------------------------------------------------------------------

def confine(root: str, *, memory_bytes: int | None = AS_DEFAULT, cpu_seconds: float | None = None,
            file_bytes: int | None = FSIZE_DEFAULT, landlock: bool = True, seccomp: bool = True,
            audit: bool = True, readable: list[str] | None = None, max_created: int | None = None) -> dict:
    """Lock the current process down to ``root`` (see the module docstring). Irreversible; call it in a process
    that is about to run untrusted code. ``readable``: the read-only roots (default :func:`read_roots`);
    ``max_created``: how many files / directories the program may create (None: no cap, e.g. under a tmpfs).
    Returns which layers were applied."""
    import ctypes  # noqa: F401  (imported before the hook forbids ctypes: numpy & co. import it)
    import math
    root = os.path.realpath(root)
    readable = read_roots() if readable is None else [os.path.realpath(p) for p in readable]
    sys.dont_write_bytecode = True
    applied = {}
    if resource is not None:
        _set_rlimits(memory_bytes, math.ceil(cpu_seconds) if cpu_seconds else None, file_bytes)
        applied["rlimits"] = True
    applied["landlock"] = bool(landlock) and _landlock(root, readable)
    applied["seccomp"] = bool(seccomp) and _seccomp()
    if audit and hasattr(sys, "addaudithook"):
        sys.addaudithook(audit_hook(root, readable, max_created))
        applied["audit_hook"] = True
    return applied
