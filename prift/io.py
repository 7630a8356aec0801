"""Atomic writes: a reader (a resumed job, Snakemake, another process) never sees a file or directory half written.

Everything is written under a temporary name beside its target, in the same directory (hence the same filesystem),
and renamed onto it when complete (`os.replace`, atomic on POSIX); a failure leaves the target as it was and removes
the temporary. This is the only place of the package that renames onto an output.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """A temporary sibling path to write `path` through (a file, or a directory made by the caller); on success it
    replaces `path` (an existing directory at `path` is removed first), on error it is removed. `suffix`: the
    temporary's extension, for writers that choose the format by it (matplotlib's savefig)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()   # the writer creates it (a file or a directory)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def write_text(path: str | Path, text: str) -> Path:
    """`text` to `path`, atomically, flushed to disk."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_json(path: str | Path, obj, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, default=str))


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """One JSON object per line, atomically: a crash leaves no file that looks complete."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return Path(path)
