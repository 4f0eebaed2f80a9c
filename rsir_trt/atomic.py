"""Atomic writes: write to a temp file beside the target, fsync, rename.

A killed process leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from .errors import RsirError


def _check_dir(path: Path) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise RsirError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise RsirError(f"{path}: directory {parent} is not writable")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path; on success it is renamed onto `path`, on error removed."""
    path = Path(path)
    _check_dir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
