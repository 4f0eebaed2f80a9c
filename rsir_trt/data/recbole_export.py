"""The augmented dataset as RecBole's pre-split sequential benchmark, same protocol.

A plain file of training rows loses the split: another library would hold out the last
items of every row, synthetic ones included. RecBole (1.x) instead reads
`{data_path}/{name}/{name}.{train,valid,test}.inter` when its config sets
`benchmark_filename`, and a sequential model then takes each row as (user, item
history, next item) with no splitting or augmentation of its own. So: train = every
next-item pair of the real training prefixes and of the synthetic rows; valid = each
real user's training prefix -> validation target; test = prefix + validation item ->
test target. Synthetic users appear only in train, so RecBole evaluates exactly the real
users on their own targets, as rsir-trt does. A `.item` file lists the whole vocabulary,
so RecBole ranks the same items we do (it would otherwise know only those in the rows)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..atomic import make_dir
from ..errors import RsirError
from .dataset import SequenceData, synthetic_user_ids

HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
SPLITS = ("train", "valid", "test")
CONFIG = """# RecBole config for this directory: run_recbole(model=..., dataset='{name}',
# config_dict={{'data_path': '<the directory holding {name}/>', ...}}, config_file_list=[this file])
benchmark_filename: [train, valid, test]
alias_of_item_id: [item_id_list]
load_col:
  inter: [user_id, item_id_list, item_id]
  item: [item_id]
MAX_ITEM_LIST_LENGTH: {max_len}
"""


def _rows(f, user: str, seq: np.ndarray, tokens: np.ndarray, start: int) -> int:
    """(user, seq[:i], seq[i]) for i >= start; returns how many rows."""
    toks = tokens[seq]
    for i in range(start, len(toks)):
        f.write(f"{user}\t{' '.join(toks[:i])}\t{toks[i]}\n")
    return max(len(toks) - start, 0)


def write_recbole_benchmark(root: str | os.PathLike, data: SequenceData) -> dict[Path, int | None]:
    """Write `root/<root name>.{train,valid,test}.inter`, `.item` and `root/recbole.yaml`;
    returns each file with its data rows (None for the config).

    The set is built in a temp directory beside `root`: a new `root` is that directory
    renamed, so a killed export leaves nothing; an existing one gets each file replaced
    by an atomic rename, once all of them are complete."""
    root = Path(root)
    name = root.name
    if root.exists() and not root.is_dir():
        raise RsirError(f"--out {root}: exists and is not a directory")
    make_dir(root.parent, f"--out {root}")
    tokens = np.asarray(data.item_tokens, dtype=object)
    real = list(zip(data.users, data.sequences))
    longest = max([len(s) for _, s in real] + [len(s) for s in data.synthetic.sequences]) - 1
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would stay on the renamed directory
    except OSError as e:
        raise RsirError(f"--out {root}: cannot write in {root.parent} ({e.strerror})") from None
    counts: dict[str, int] = {}
    try:
        with open(tmp / f"{name}.train.inter", "w") as f:
            f.write(HEADER)
            counts["train"] = sum(_rows(f, u, s[:-2], tokens, 1) for u, s in real)
            counts["train"] += sum(_rows(f, u, s, tokens, 1)
                                   for u, s in zip(synthetic_user_ids(data), data.synthetic.sequences))
        for split, cut in (("valid", 1), ("test", 0)):  # only each real user's own target
            with open(tmp / f"{name}.{split}.inter", "w") as f:
                f.write(HEADER)
                counts[split] = sum(_rows(f, u, s[: len(s) - cut], tokens, len(s) - cut - 1) for u, s in real)
        (tmp / f"{name}.item").write_text("item_id:token\n" + "".join(t + "\n" for t in data.item_tokens[1:]))
        (tmp / "recbole.yaml").write_text(CONFIG.format(name=name, max_len=longest))
        for p in tmp.iterdir():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        if root.exists():
            for p in tmp.iterdir():
                os.replace(p, root / p.name)
        else:
            os.rename(tmp, root)
    except OSError as e:
        raise RsirError(f"--out {root}: write failed ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**{root / f"{name}.{s}.inter": counts[s] for s in SPLITS},
            root / f"{name}.item": len(data.item_tokens) - 1, root / "recbole.yaml": None}
