import pytest

from rsir_trt.data import build, load, open_dataset, write_sequences
from rsir_trt.data.dataset import kcore
from rsir_trt.errors import RsirError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_lines_format_split_and_ids(tmp_path):
    p = write(tmp_path, "d.txt", "1 10 11 12 13\n2 11 12 14\n")
    d = load(p)
    assert d.item_tokens == ["<pad>", "10", "11", "12", "13", "14"]  # numeric ids keep order
    assert [s.tolist() for s in d.sequences] == [[1, 2, 3, 4], [2, 3, 5]]
    assert [s.tolist() for s in d.train_sequences()] == [[1, 2], [2]]
    inputs, targets = d.eval_inputs("valid")
    assert targets.tolist() == [3, 3] and [s.tolist() for s in inputs] == [[1, 2], [2]]
    inputs, targets = d.eval_inputs("test")
    assert targets.tolist() == [4, 5] and [s.tolist() for s in inputs] == [[1, 2, 3], [2, 3]]


def test_truncation_keeps_last_items(tmp_path):
    p = write(tmp_path, "d.txt", "1 " + " ".join(str(i) for i in range(1, 11)) + "\n")
    d = load(p, max_len=4)
    assert [d.item_tokens[i] for i in d.sequences[0]] == ["7", "8", "9", "10"]


def test_recbole_inter_sorted_by_time_stably(tmp_path):
    p = write(tmp_path, "x.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
              "u1\ta\t5\t30\nu1\tb\t3\t10\nu1\tc\t4\t10\nu2\ta\t1\t1\nu2\tb\t1\t2\nu2\tc\t1\t3\n")
    d = load(p)
    toks = [[d.item_tokens[i] for i in s] for s in d.sequences]
    assert toks == [["b", "c", "a"], ["a", "b", "c"]]  # b before c: tie keeps file order


def test_csv_and_tsv(tmp_path):
    p = write(tmp_path, "x.csv", "user,item,timestamp\n7,100,3\n7,101,1\n7,102,2\n")
    d = load(p)
    assert [d.item_tokens[i] for i in d.sequences[0]] == ["101", "102", "100"]
    p = write(tmp_path, "x.tsv", "user_id\titem_id\n7\t1\n7\t2\n7\t3\n")
    assert len(load(p).sequences[0]) == 3


def test_write_back_in_original_ids_round_trips(tmp_path):
    p = write(tmp_path, "d.txt", "5 300 200 100\n9 100 300 200 400\n")
    d = load(p)
    out = tmp_path / "out.txt"
    write_sequences(out, d.users, d.sequences, d.item_tokens)
    assert out.read_text() == p.read_text()


def test_kcore_iterates_to_fixed_point():
    users = ["a", "b", "c"]
    seqs = [["1", "2", "3"], ["1", "2", "4"], ["1", "5", "6"]]
    u, s = kcore(users, seqs, 2)
    assert u == ["a", "b"] and s == [["1", "2"], ["1", "2"]]


@pytest.mark.parametrize("name,text,message", [
    ("e.txt", "", "file is empty"),
    ("e.txt", "\n\n", "file is empty"),
    ("m.txt", "1 2 3 4\n2\n", r"m.txt:2: a user id and at least one item"),
    ("n.txt", "1 2 x 4\n", r"n.txt:1: item id 'x' is not a non-negative integer"),
    ("g.txt", "1 2 -3 4\n", r"g.txt:1: item id '-3'"),
    ("s.txt", "1 2 3 4\n2,3,4,5\n", r"s.txt:2: expected space-separated"),
    ("d.txt", "1 2 3 4\n1 5 6 7\n", r"d.txt:2: user 1 already appeared on line 1"),
    ("t.txt", "1 2 3 4\n2 3 4\n3 5 6\n", r"t.txt: user 2 has 2 interactions; leave-one-out needs at least 3"),
    ("h.csv", "user,user,item\n1,2,3\n", r"h.csv:1: duplicate column 'user'"),
    ("c.csv", "person,thing\n1,2\n", r"c.csv:1: no 'user_id' column"),
    ("f.csv", "user,item\n1,2\n1\t3\n", r"f.csv:3: mixed separators"),
    ("w.csv", "user,item,timestamp\n1,2,abc\n", r"w.csv:2: timestamp 'abc' is not a number"),
    ("r.inter", "user_id\titem_id\n1\t2\n", r"r.inter:1: header field 'user_id' has no ':type'"),
])
def test_bad_data_names_file_and_line(tmp_path, name, text, message):
    p = write(tmp_path, name, text)
    with pytest.raises(RsirError, match=message):
        load(p)


def test_non_utf8_file(tmp_path):
    p = tmp_path / "b.txt"
    p.write_bytes(b"1 2 3\xff\xfe 4\n")
    with pytest.raises(RsirError, match="not UTF-8"):
        load(p)


def test_unknown_dataset_name():
    with pytest.raises(RsirError, match="not a known dataset"):
        open_dataset("no-such-dataset")


def test_embedded_default_is_movielens(ml100k):
    s = ml100k.stats()
    assert s["users"] == 943 and s["items"] == 1682 and s["max_len"] == 50


def test_vocabulary_mismatch_is_reported():
    with pytest.raises(RsirError, match="item 12 of user 1 is not in the model's vocabulary"):
        build("d", ["1"], [["10", "11", "12"]], item_tokens=["<pad>", "10", "11"])


def test_recbole_benchmark_export_keeps_the_split(tmp_path, capsys):
    """Synthetic rows only train; validation and test are each real user's own target."""
    from rsir_trt.cli import main
    data = write(tmp_path, "d.txt", "1 15 10 11 12 13 14\n2 20 21 22\n")  # --max-len 5 drops 15
    syn = write(tmp_path, "syn.txt", "9 10 12 20\n")   # starts as its seed user 1 does (after truncation)
    write(tmp_path, "syn.txt.provenance.tsv", "synthetic_user\tseed_user\titeration\n9\t1\t1\n")
    out = tmp_path / "aug"
    assert main(["data", "export-recbole", "--data", str(data), "--max-len", "5", "--extra", str(syn),
                 "--out", str(out)]) == 0
    head = "user_id:token\titem_id_list:token_seq\titem_id:token"
    rows = {s: (out / f"aug.{s}.inter").read_text().splitlines() for s in ("train", "valid", "test")}
    # user 2's single training item has no next item; the synthetic user gets a fresh id (3)
    assert rows["train"] == [head, "1\t10\t11", "1\t10 11\t12", "3\t10\t12", "3\t10 12\t20"]
    assert rows["valid"] == [head, "1\t10 11 12\t13", "2\t20\t21"]
    assert rows["test"] == [head, "1\t10 11 12 13\t14", "2\t20 21\t22"]
    # the whole vocabulary, so RecBole ranks the same items (15 appears in no row)
    assert (out / "aug.item").read_text().splitlines() == ["item_id:token", "10", "11", "12", "13", "14", "15",
                                                           "20", "21", "22"]
    config = (out / "recbole.yaml").read_text()
    assert "benchmark_filename: [train, valid, test]" in config and "alias_of_item_id: [item_id_list]" in config
    assert "MAX_ITEM_LIST_LENGTH: 4" in config
    # exporting again replaces the set and leaves no temp directory behind
    assert main(["data", "export-recbole", "--data", str(data), "--max-len", "5", "--out", str(out)]) == 0
    assert (out / "aug.train.inter").read_text().splitlines() == [head, "1\t10\t11", "1\t10 11\t12"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    capsys.readouterr()
    assert main(["data", "export-recbole", "--data", str(data), "--out", str(data / "aug")]) == 2   # a file in the way
    assert "cannot create" in capsys.readouterr().err
    assert main(["data", "export-recbole", "--data", str(data), "--out", str(tmp_path / "new" / "aug")]) == 0
    assert (tmp_path / "new" / "aug" / "aug.train.inter").is_file()   # missing folders are made
    assert main(["data", "export-recbole", "--data", str(data), "--out", str(data)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["data", "export-recbole", "--data", str(data), "--extra", str(data), "--out", str(out)]) == 2
    assert "provenance file" in capsys.readouterr().err


def test_identity_names_the_real_data_only():
    import numpy as np
    from rsir_trt.data import identity
    from rsir_trt.data.dataset import Synthetic
    a = build("x", ["u1", "u2"], [["1", "2", "3"], ["2", "3", "4", "5"]])
    same = build("x", ["u1", "u2"], [["1", "2", "3"], ["2", "3", "4", "5"]])
    same.synthetic.extend(Synthetic([np.array([1, 2, 3])], [0], [1]))   # synthetic rows are not the data
    moved = build("x", ["u1", "u2"], [["1", "2", "3"], ["2", "3", "5", "4"]])   # one order swapped
    renamed = build("x", ["u1", "u3"], [["1", "2", "3"], ["2", "3", "4", "5"]])
    ident = identity(a)
    assert ident["users"] == 2 and ident["interactions"] == 7 and ident == identity(same)
    prints = {identity(d)["fingerprint"] for d in (a, moved, renamed)}
    assert len(prints) == 3   # an item order or a user id changed: another fingerprint
