"""The in-memory dataset: contiguous ids, truncation, leave-one-out split, synthetic rows.

Internal item ids run 1..num_items-1 (0 is padding). `item_tokens[i]` is the user's own
id of internal item i, so anything we write goes back in the user's ids."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import RsirError
from .readers import read_any, read_sequence_lines

MIN_USER_LEN = 3  # one training item, one validation target, one test target


@dataclass
class Synthetic:
    """Generated training sequences and where each came from."""
    sequences: list[np.ndarray] = field(default_factory=list)
    seed_user: list[int] = field(default_factory=list)   # index into SequenceData.users
    iteration: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sequences)

    def extend(self, other: "Synthetic") -> None:
        self.sequences += other.sequences
        self.seed_user += other.seed_user
        self.iteration += other.iteration


@dataclass
class SequenceData:
    name: str
    users: list[str]                 # the user's own ids, index u
    item_tokens: list[str]           # item_tokens[0] is padding
    sequences: list[np.ndarray]      # full (truncated) sequence per user, internal ids
    synthetic: Synthetic = field(default_factory=Synthetic)

    @property
    def num_items(self) -> int:
        """Vocabulary size including the padding id 0."""
        return len(self.item_tokens)

    # leave-one-out split: the last item is the test target, the one before it validation
    def train_sequences(self) -> list[np.ndarray]:
        return [s[:-2] for s in self.sequences]

    def training_set(self) -> list[np.ndarray]:
        """Everything the trainer may learn from: real training prefixes + synthetic rows."""
        return self.train_sequences() + list(self.synthetic.sequences)

    def eval_inputs(self, split: str) -> tuple[list[np.ndarray], np.ndarray]:
        if split == "valid":
            return [s[:-2] for s in self.sequences], np.array([s[-2] for s in self.sequences])
        if split == "test":
            return [s[:-1] for s in self.sequences], np.array([s[-1] for s in self.sequences])
        raise RsirError(f"unknown split {split!r} (valid or test)")

    def stats(self) -> dict:
        lens = np.array([len(s) for s in self.sequences])
        n_inter = int(lens.sum())
        syn = int(sum(len(s) for s in self.synthetic.sequences))
        n_items = self.num_items - 1
        return {
            "name": self.name, "users": len(self.users), "items": n_items,
            "interactions": n_inter, "avg_len": round(float(lens.mean()), 2),
            "median_len": float(np.median(lens)), "min_len": int(lens.min()), "max_len": int(lens.max()),
            "density_pct": round(100 * n_inter / (len(self.users) * n_items), 4),
            "synthetic_sequences": len(self.synthetic), "synthetic_interactions": syn,
        }


def kcore(users: list[str], seqs: list[list[str]], k: int):
    """Iteratively drop users and items with fewer than k interactions."""
    while True:
        counts: dict[str, int] = {}
        for s in seqs:
            for i in s:
                counts[i] = counts.get(i, 0) + 1
        new = [[i for i in s if counts[i] >= k] for s in seqs]
        keep = [j for j, s in enumerate(new) if len(s) >= k]
        changed = len(keep) != len(seqs) or any(len(a) != len(b) for a, b in zip(new, seqs))
        users, seqs = [users[j] for j in keep], [new[j] for j in keep]
        if not changed:
            return users, seqs


def build(name: str, users: list[str], seqs: list[list[str]], max_len: int = 50,
          k_core: int = 0, item_tokens: list[str] | None = None, source: str = "") -> SequenceData:
    """Remap to contiguous ids (or to a given vocabulary), truncate, check split sizes."""
    if max_len < MIN_USER_LEN:
        raise RsirError(f"--max-len must be at least {MIN_USER_LEN}, got {max_len}")
    if k_core > 0:
        users, seqs = kcore(users, seqs, k_core)
    if item_tokens is None:
        seen = list(dict.fromkeys(t for s in seqs for t in s))  # first-appearance order
        if all(t.isdigit() for t in seen):
            seen.sort(key=int)  # numeric ids keep their order (Beauty's ids stay the same)
        item_tokens = ["<pad>", *seen]
    index = {t: i for i, t in enumerate(item_tokens) if i > 0}
    arrays = []
    for u, s in zip(users, seqs):
        if len(s) < MIN_USER_LEN:
            raise RsirError(f"{source or name}: user {u} has {len(s)} interaction{'' if len(s) == 1 else 's'}; "
                            f"leave-one-out needs at least {MIN_USER_LEN} (use --kcore 3 to filter)")
        try:
            ids = [index[t] for t in s[-max_len:]]
        except KeyError as e:
            raise RsirError(f"{source or name}: item {e.args[0]} of user {u} is not in the model's vocabulary") from None
        arrays.append(np.asarray(ids, dtype=np.int64))
    if not arrays:
        raise RsirError(f"{source or name}: no users left")
    return SequenceData(name=name, users=list(users), item_tokens=list(item_tokens), sequences=arrays)


def load(path: str | Path, fmt: str = "auto", max_len: int = 50, k_core: int = 0,
         item_tokens: list[str] | None = None) -> SequenceData:
    path = Path(path)
    users, seqs = read_any(path, fmt)
    return build(path.stem, users, seqs, max_len=max_len, k_core=k_core,
                 item_tokens=item_tokens, source=str(path))


def write_sequences(path: str | Path, user_ids: list[str], sequences: list[np.ndarray],
                    item_tokens: list[str]) -> None:
    """The one-line-per-user format, in the user's own item ids, written atomically."""
    tokens = np.asarray(item_tokens, dtype=object)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for u, s in zip(user_ids, sequences):
            f.write(u + " " + " ".join(tokens[s]) + "\n")


def synthetic_user_ids(data: SequenceData, start: int = 0) -> list[str]:
    """Fresh integer ids for synthetic users, after every real one."""
    numeric = [int(u) for u in data.users if u.isdigit()]
    base = (max(numeric) if numeric else len(data.users)) + 1 + start
    return [str(base + j) for j in range(len(data.synthetic))]


def write_synthetic(path: str | Path, data: SequenceData) -> None:
    """Synthetic rows (format above) plus a provenance TSV beside them."""
    ids = synthetic_user_ids(data)
    write_sequences(path, ids, data.synthetic.sequences, data.item_tokens)
    prov = Path(str(path) + ".provenance.tsv")
    with atomic_path(prov) as tmp, open(tmp, "w") as f:
        f.write("synthetic_user\tseed_user\titeration\n")
        for sid, u, it in zip(ids, data.synthetic.seed_user, data.synthetic.iteration):
            f.write(f"{sid}\t{data.users[u]}\t{it}\n")


def add_synthetic_file(ds: SequenceData, extra: Path, max_len: int) -> None:
    """Read back synthetic rows that `write_synthetic` wrote (with their provenance TSV) into `ds`."""
    users, seqs = read_sequence_lines(extra)
    rows = build(extra.name, users, seqs, max_len=max_len, item_tokens=ds.item_tokens, source=str(extra))
    prov = Path(str(extra) + ".provenance.tsv")
    if not prov.is_file():
        raise RsirError(f"--extra {extra}: its provenance file {prov} is missing (written by rsir-trt generate)")
    index = {u: i for i, u in enumerate(ds.users)}
    seed_of, iteration_of = {}, {}
    for n, line in enumerate(prov.read_text().splitlines()[1:], 2):
        fields = line.split("\t")
        if len(fields) != 3 or fields[1] not in index or not fields[2].isdigit():
            raise RsirError(f"{prov}:{n}: expected synthetic_user, a known seed_user and an iteration")
        seed_of[fields[0]], iteration_of[fields[0]] = index[fields[1]], int(fields[2])
    missing = [u for u in users if u not in seed_of]
    if missing:
        raise RsirError(f"{prov}: no provenance for synthetic user {missing[0]}")
    # every generated row starts with its seed's first item; rows of other data (numeric
    # ids and users make them look valid) almost never do
    wrong = [u for u, row in zip(users, rows.sequences) if row[0] != ds.sequences[seed_of[u]][0]]
    if wrong:
        raise RsirError(f"--extra {extra}: synthetic user {wrong[0]} does not start with the first item of its "
                        f"seed user {ds.users[seed_of[wrong[0]]]}: generated from other data (or another --max-len)")
    ds.synthetic.sequences += rows.sequences
    ds.synthetic.seed_user += [seed_of[u] for u in users]
    ds.synthetic.iteration += [iteration_of[u] for u in users]


def write_training_file(path: str | Path, data: SequenceData) -> None:
    """Real training prefixes + synthetic rows: a file any library can train on."""
    ids = list(data.users) + synthetic_user_ids(data)
    write_sequences(path, ids, data.train_sequences() + list(data.synthetic.sequences), data.item_tokens)
