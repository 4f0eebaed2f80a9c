"""Which real data a model was trained on, so that it is not run on other data by mistake.

The vocabulary check alone cannot tell: datasets in the one-line-per-user format number
their items 1..N, so every Beauty item (1..12,101) is also a valid Sports item id, and a
Sports engine would generate from Beauty's users without a word. A checkpoint (and each
engine built from it) records the identity of its real data; `generate`, `evaluate` and
`bench` refuse other data unless asked (`--other-data`: other users of the same item
catalogue), and `loop --resume` / `--branch-from` refuse it outright."""
from __future__ import annotations

import hashlib

import numpy as np

from ..errors import RsirError


def identity(data) -> dict:
    """Name, size and a fingerprint of the real users' sequences (synthetic rows left out)."""
    h = hashlib.sha256("\n".join(data.users).encode())
    h.update("\n".join(data.item_tokens).encode())
    lengths = np.array([len(s) for s in data.sequences], dtype=np.int64)
    h.update(lengths.tobytes())
    h.update(np.concatenate(data.sequences).astype(np.int64).tobytes())
    return {"name": data.name, "users": len(data.users), "interactions": int(lengths.sum()),
            "fingerprint": h.hexdigest()[:16]}


def describe(ident: dict) -> str:
    return f"{ident.get('name')} ({ident.get('users', 0):,} users, {ident.get('interactions', 0):,} interactions)"


OTHER_DATA = "--other-data uses it anyway (other users of the same item catalogue)"


def check_trained_on(trained_on: dict, data, where: str, other_data: bool = False, advice: str = OTHER_DATA) -> None:
    """Refuse `data` unless it is the data the model was trained on (or `other_data`).
    Models saved before fingerprints were recorded are not checked."""
    if other_data or not trained_on.get("fingerprint"):
        return
    here = identity(data)
    if here["fingerprint"] != trained_on["fingerprint"]:
        raise RsirError(f"{where}: the model was trained on {describe(trained_on)}, not on this data "
                        f"({describe(here)}); {advice}")
