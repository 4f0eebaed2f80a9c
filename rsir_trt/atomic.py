"""Atomic writes: write to a temp file beside the target, fsync, rename.

A killed process leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path

from .errors import RsirError


def _umask() -> int:
    mask = os.umask(0)   # the only way to read it is to set it: done once, at import
    os.umask(mask)
    return mask


# a temp file is made 0600; the file it becomes gets the mode a plain open() would give
# it (or keeps the mode of the file it replaces), so outputs stay readable as usual
NEW_FILE_MODE = 0o666 & ~_umask()


def make_dir(path: Path, label: str = "") -> Path:
    """mkdir -p, as one error line: an output's missing folders are made (a fresh checkout
    has no runs/ or engines/: git ignores them); a file in the way is an error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RsirError(f"{label or path}: cannot create {path} ({e.strerror})") from None
    return path


def _check_dir(path: Path) -> None:
    parent = make_dir(path.parent, str(path))
    if not os.access(parent, os.W_OK):
        raise RsirError(f"{path}: directory {parent} is not writable")


def _temp_beside(path: Path, suffix: str) -> str:
    """An empty temp file in path's directory. os.access says yes to root even where the
    filesystem says no, so this is the real writability test."""
    _check_dir(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        raise RsirError(f"{path}: cannot write in {path.parent} ({e.strerror})") from None
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path; on success it is renamed onto `path`, on error removed."""
    path = Path(path)
    tmp = _temp_beside(path, ".tmp")
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if path.exists() else NEW_FILE_MODE)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise RsirError(f"{path}: write failed ({e.strerror or e})") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable(path) -> None:
    """Fail before long work, not after it: can a file be created beside `path`?"""
    os.unlink(_temp_beside(Path(path), ".probe"))


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
