"""Named datasets: the embedded default (MovieLens-100K from RecBole's wheel) and the
public benchmarks when a data folder is present. Never bundled with the project."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import RsirError

DEFAULT = "ml-100k"

# name -> (relative path inside a data folder, reader format)
BENCHMARKS = {
    "beauty": ("beauty/Beauty.txt", "lines"),
    "sports": ("sports/Sports_and_Outdoors.txt", "lines"),
    "ml-100k-seq": ("ml-100k/ml-100k.seq.txt", "lines"),
}


def data_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("RSIR_DATA_DIR", "").split(os.pathsep) if p]
    return dirs + [Path("data"), Path("../shared/data")]


def recbole_ml100k() -> Path:
    from importlib import metadata
    try:
        dist = metadata.distribution("recbole")
    except metadata.PackageNotFoundError:
        raise RsirError("the default dataset ml-100k comes from RecBole's wheel: "
                        "pip install --no-deps recbole==1.2.1 (or pass --data FILE)") from None
    path = Path(dist.locate_file("recbole/dataset_example/ml-100k/ml-100k.inter"))
    if not path.is_file():
        raise RsirError(f"RecBole is installed but {path} is missing; reinstall recbole==1.2.1")
    return path


def resolve(name_or_path: str | None) -> tuple[Path, str]:
    """A file path, or a catalog name -> (path, format)."""
    name = name_or_path or DEFAULT
    if name == DEFAULT:
        return recbole_ml100k(), "inter"
    if name in BENCHMARKS:
        rel, fmt = BENCHMARKS[name]
        for d in data_dirs():
            if (d / rel).is_file():
                return d / rel, fmt
        raise RsirError(f"--data {name}: {rel} not found under {', '.join(map(str, data_dirs()))} "
                        "(set RSIR_DATA_DIR)")
    path = Path(name)
    if path.exists():
        return path, "auto"
    raise RsirError(f"--data {name}: no such file, and not a known dataset "
                    f"({', '.join([DEFAULT, *BENCHMARKS])})")
