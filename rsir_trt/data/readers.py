"""Readers for the interaction formats users bring.

Each returns `(users, sequences)`: user tokens in file order and, per user, the item
tokens in chronological order. Tokens stay strings so ids can be written back exactly.
Every problem raises RsirError naming the file and line."""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import RsirError, at

Sequences = tuple[list[str], list[list[str]]]


def _check_id(path, lineno: int, token: str, what: str) -> str:
    if not token.isdigit():
        raise RsirError(f"{at(path, lineno)}: {what} id {token!r} is not a non-negative integer")
    return token


def _open_lines(path: Path):
    if not path.is_file():
        raise RsirError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RsirError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise RsirError(f"{path}: file is empty")
    return lines


def read_sequence_lines(path: str | Path) -> Sequences:
    """One user per line: `user item item ...`, single spaces, chronological order."""
    path = Path(path)
    users, seqs, seen = [], [], {}
    for lineno, line in enumerate(_open_lines(path), 1):
        if not line.strip():
            continue
        if "\t" in line or "," in line or ";" in line:
            raise RsirError(f"{at(path, lineno)}: expected space-separated ids, found another separator")
        tokens = line.split()
        if len(tokens) < 2:
            raise RsirError(f"{at(path, lineno)}: a user id and at least one item are required")
        user = _check_id(path, lineno, tokens[0], "user")
        if user in seen:
            raise RsirError(f"{at(path, lineno)}: user {user} already appeared on line {seen[user]}")
        seen[user] = lineno
        users.append(user)
        seqs.append([_check_id(path, lineno, t, "item") for t in tokens[1:]])
    return users, seqs


def _group(path, rows) -> Sequences:
    """rows: (lineno, user, item, timestamp or None) -> per-user sequences, stable by time."""
    by_user: dict[str, list] = {}
    for row in rows:
        by_user.setdefault(row[1], []).append(row)
    users = list(by_user)
    seqs = []
    for u in users:
        rows_u = by_user[u]
        if rows_u[0][3] is not None:
            rows_u = sorted(rows_u, key=lambda r: r[3])  # sorted() is stable: ties keep file order
        seqs.append([r[2] for r in rows_u])
    if not users:
        raise RsirError(f"{path}: no interactions")
    return users, seqs


def _find_column(path, header: list[str], names: tuple[str, ...], required: bool):
    for i, col in enumerate(header):
        if col.lower() in names:
            return i
    if required:
        raise RsirError(f"{at(path, 1)}: no {names[0]!r} column (found {', '.join(header)})")
    return None


def _rows(path, records, header, timestamp_optional=True):
    lower = [h.lower() for h in header]
    dupes = sorted({h for h in lower if lower.count(h) > 1})
    if dupes:
        raise RsirError(f"{at(path, 1)}: duplicate column {dupes[0]!r} in header")
    ui = _find_column(path, header, ("user_id", "user", "userid", "uid"), True)
    ii = _find_column(path, header, ("item_id", "item", "itemid", "iid"), True)
    ti = _find_column(path, header, ("timestamp", "time", "ts"), not timestamp_optional)
    for lineno, fields in records:
        if len(fields) != len(header):
            raise RsirError(f"{at(path, lineno)}: {len(fields)} fields, header has {len(header)}")
        user, item = fields[ui].strip(), fields[ii].strip()
        if not user or not item:
            raise RsirError(f"{at(path, lineno)}: empty user or item id")
        if user.startswith("-") or item.startswith("-"):
            raise RsirError(f"{at(path, lineno)}: negative id")
        ts = None
        if ti is not None:
            try:
                ts = float(fields[ti])
            except ValueError:
                raise RsirError(f"{at(path, lineno)}: timestamp {fields[ti]!r} is not a number") from None
        yield lineno, user, item, ts


def read_recbole_inter(path: str | Path) -> Sequences:
    """RecBole atomic `.inter`: tab-separated, typed header (`user_id:token ...`)."""
    path = Path(path)
    lines = _open_lines(path)
    header = [h.split(":")[0] for h in lines[0].split("\t")]
    for h in lines[0].split("\t"):
        if ":" not in h:
            raise RsirError(f"{at(path, 1)}: header field {h!r} has no ':type' (RecBole atomic format)")
    records = ((n, line.split("\t")) for n, line in enumerate(lines[1:], 2) if line.strip())
    return _group(path, _rows(path, records, header))


def read_csv(path: str | Path) -> Sequences:
    """CSV or TSV with a header naming user, item and optionally timestamp columns."""
    path = Path(path)
    lines = _open_lines(path)
    delim = "\t" if path.suffix.lower() == ".tsv" or "\t" in lines[0] else ","
    other = "," if delim == "\t" else "\t"
    header = next(csv.reader([lines[0]], delimiter=delim))
    if len(header) < 2:
        raise RsirError(f"{at(path, 1)}: header has one column; expected {delim!r}-separated user,item[,timestamp]")
    def records():
        for n, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            fields = next(csv.reader([line], delimiter=delim))
            if len(fields) != len(header) and other in line:
                raise RsirError(f"{at(path, n)}: mixed separators ({other!r} in a {delim!r}-separated file)")
            yield n, fields
    return _group(path, _rows(path, records(), header))


FORMATS = {"lines": read_sequence_lines, "inter": read_recbole_inter, "csv": read_csv}


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return "inter"
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "lines"


def read_any(path: str | Path, fmt: str = "auto") -> Sequences:
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise RsirError(f"--format: unknown format {fmt!r} (choose from auto, {', '.join(FORMATS)})")
    return FORMATS[fmt](path)
