"""The loop end to end, and SIGKILL at several points followed by --resume: results
identical to an uninterrupted run, input data untouched."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from rsir_trt.data.catalog import recbole_ml100k

SEEDLESS = ["loop", "--iterations", "1", "--epochs", "2", "--m", "2"]
ARGS = [*SEEDLESS, "--seed", "3"]
KILL_POINTS = ["iter0/train-sasrec:epoch1", "iter0/export", "iter0/generate", "iter0/merge",
               "iter1/train-sasrec:epoch1"]


def cli(args, kill_at=None):
    env = dict(os.environ, RSIR_THREADS="2")  # training is bit-reproducible at any fixed thread count
    env.pop("RSIR_KILL_AT", None)
    if kill_at:
        env["RSIR_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "rsir_trt", *args], env=env, capture_output=True, text=True)


def report_rows(run):
    """The report's per-iteration rows without their timings (which no two runs share)."""
    timing = ("train_seconds", "generation_seconds", "generation_seq_per_s")
    return [{k: v for k, v in r.items() if k not in timing}
            for r in json.loads((run / "report.json").read_text())["iterations"]]


def fingerprint(run):
    """Everything a user keeps from a run: metrics, synthetic data, the training file."""
    files = ["iter0/synthetic.txt", "iter0/synthetic.txt.provenance.tsv", "iter0/train_augmented.txt",
             "iter0/synthetic.npz", "iter0/test-ranks-sasrec.npz", "iter1/test-ranks-sasrec.npz"]
    return report_rows(run), {f: hashlib.sha256((run / f).read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("loop") / "run"
    r = cli([*ARGS, "--out", str(run)])
    assert r.returncode == 0, r.stderr
    return run


def test_loop_writes_report_plot_and_data(reference_run):
    report = json.loads((reference_run / "report.json").read_text())
    assert [r["iteration"] for r in report["iterations"]] == [0, 1]
    assert report["iterations"][1]["train_sequences"] > report["iterations"][0]["train_sequences"]
    assert (reference_run / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| iter |" in (reference_run / "report.md").read_text()
    state = json.loads((reference_run / "state.json").read_text())["done"]
    assert state == ["iter0/train-sasrec", "iter0/export", "iter0/generate", "iter0/merge", "iter1/train-sasrec"]
    # the recorded per-user test ranks give the recorded metrics, digit for digit
    from rsir_trt import user_ranks
    for k, row in enumerate(report["iterations"]):
        ranks, history = user_ranks.load(user_ranks.ranks_path(reference_run / f"iter{k}", "sasrec"))
        assert len(ranks) == len(history) == 943 and history.min() >= 1
        assert {x: user_ranks.metrics_from_ranks(ranks)[x] for x in row["test"]} == row["test"]
    users = report["test_users"]
    assert users["change_ci95_over_users"][0]["recall@10"][0] == pytest.approx(
        100 * (report["iterations"][1]["test"]["recall@10"] / report["iterations"][0]["test"]["recall@10"] - 1))
    assert [b["users"] for b in users["by_length"][0]][-1] == 943
    # by the target's popularity in ml-100k's training data: every user in one bucket, the
    # buckets' hits add up to the whole, and the most trained items are the easiest targets
    for it, row in zip(users["by_popularity"], report["iterations"]):
        assert [b["target_rank"] for b in it] == ["1-100", "101-1000", "1001+", "all"]
        assert sum(b["users"] for b in it[:-1]) == 943 and it[-1]["recall@10"] == row["test"]["recall@10"]
        assert sum(b["users"] * b["recall@10"] for b in it[:-1]) == pytest.approx(943 * row["test"]["recall@10"])
        assert it[0]["recall@10"] > it[2]["recall@10"]
    text = (reference_run / "report.md").read_text()
    assert "95% interval over the test users" in text and "| target rank | users | iter 0 | iter 1 |" in text


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_and_resumed_run_is_identical(point, reference_run, tmp_path):
    data = recbole_ml100k()
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    run = tmp_path / "run"
    killed = cli([*ARGS, "--out", str(run)], kill_at=point)
    assert killed.returncode == -9, killed.stderr          # really killed there
    step = point.split(":")[0]
    assert step not in json.loads((run / "state.json").read_text())["done"] if (run / "state.json").exists() else True
    if ":epoch" in point:  # killed mid-training: the epochs before the kill are not run again
        assert (run / point.split("/")[0] / "sasrec.train-state.pt").exists()
    resumed = cli([*ARGS, "--out", str(run), "--resume", "--gen-batch", "7"])  # batching never matters
    assert resumed.returncode == 0, resumed.stderr
    assert ("resuming from sasrec.train-state.pt" in resumed.stdout) == (":epoch" in point)
    assert fingerprint(run) == fingerprint(reference_run)
    assert not list(run.rglob("*.train-state.pt"))         # removed once each training is done
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before
    assert not list(run.rglob("*.tmp"))                    # no temp files left behind


def test_a_finished_run_resumed_with_more_iterations_goes_on_as_a_longer_run(reference_run, tmp_path):
    """--resume with a larger --iterations extends a finished run (how rounds 4-5 were added to
    3-round loops): its finished steps are kept, and it ends as the longer run from scratch."""
    longer = ["loop", "--iterations", "2", *ARGS[3:]]
    run = tmp_path / "extended"
    shutil.copytree(reference_run, run)
    r = cli([*longer, "--out", str(run), "--resume"])
    assert r.returncode == 0, r.stderr
    assert "iter 0: training" not in r.stdout and "iter 1: training" not in r.stdout
    assert "iter 1: generating" in r.stdout and "iter 2: training" in r.stdout
    whole = tmp_path / "whole"
    assert cli([*longer, "--out", str(whole)]).returncode == 0
    assert len(report_rows(run)) == 3 and report_rows(run) == report_rows(whole)
    for f in ("iter1/synthetic.txt", "iter2/test-ranks-sasrec.npz"):
        assert (run / f).read_bytes() == (whole / f).read_bytes()


def test_a_foreign_training_snapshot_is_one_error_line(reference_run, tmp_path):
    run = tmp_path / "run"
    assert cli([*ARGS, "--out", str(run)], kill_at="iter0/train-sasrec:epoch1").returncode == -9
    snap = run / "iter0" / "sasrec.train-state.pt"
    snap.write_bytes(b"not a snapshot")
    r = cli([*ARGS, "--out", str(run), "--resume"])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"{snap}: not a training snapshot" in r.stderr + r.stdout
    torch.save(torch.zeros(3), snap)  # a readable file that holds no state
    r = cli([*ARGS, "--out", str(run), "--resume"])
    assert r.returncode != 0 and f"{snap}: not a training snapshot" in r.stderr + r.stdout
    snap.unlink()   # as the message says: the training then starts again, and ends as it would have
    assert cli([*ARGS, "--out", str(run), "--resume"]).returncode == 0
    assert fingerprint(run) == fingerprint(reference_run)


def test_weak_to_strong_and_finetune(tmp_path):
    run = tmp_path / "w2s"
    r = cli([*ARGS, "--teacher", "gru4rec", "--student", "sasrec", "--finetune", "--out", str(run)])
    assert r.returncode == 0, r.stderr
    assert (run / "iter0" / "gru4rec.pt").exists() and (run / "iter1" / "sasrec.pt").exists()
    assert not (run / "iter1" / "gru4rec.pt").exists()       # the last teacher would teach no one
    gen = json.loads((run / "iter0" / "generation.json").read_text())
    assert gen["runtime"]["runtime"] == "onnxruntime" and gen["kept"] > 0


def test_branch_reuses_the_baseline_and_refuses_a_different_one(reference_run, tmp_path):
    run = tmp_path / "ablation"
    r = cli([*ARGS, "--tau", "1682", "--out", str(run), "--branch-from", str(reference_run)])
    assert r.returncode == 0, r.stderr
    assert "iter 0: training" not in r.stdout                     # iteration 0 was not retrained
    ours, theirs = (json.loads((x / "report.json").read_text())["iterations"] for x in (run, reference_run))
    assert ours[0]["test"] == theirs[0]["test"] and ours[0]["valid"] == theirs[0]["valid"]
    ranks = "iter0/test-ranks-sasrec.npz"   # copied with the model: the report's intervals need it
    assert (run / ranks).read_bytes() == (reference_run / ranks).read_bytes()
    assert "test_users" in json.loads((run / "report.json").read_text())
    assert ours[1]["train_sequences"] != theirs[1]["train_sequences"]  # the ablation generated differently
    bad = cli([*ARGS, "--epochs", "3", "--out", str(tmp_path / "other"), "--branch-from", str(reference_run)])
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "Traceback" not in bad.stderr
    assert "train" in bad.stderr and not (tmp_path / "other").exists()  # nothing created


def test_a_synthetic_weight_branches_from_the_same_baseline_and_changes_only_the_successor(reference_run, tmp_path):
    run = tmp_path / "weighted"
    r = cli([*ARGS, "--synthetic-weight", "0.5", "--out", str(run), "--branch-from", str(reference_run)])
    assert r.returncode == 0, r.stderr
    assert "iter 0: training" not in r.stdout     # the weight has no say in iteration 0
    same = "iter0/synthetic.txt"                  # so the first round generates the same rows
    assert (run / same).read_bytes() == (reference_run / same).read_bytes()
    ours, theirs = (json.loads((x / "report.json").read_text())["iterations"] for x in (run, reference_run))
    assert ours[0]["test"] == theirs[0]["test"] and ours[1]["train_sequences"] == theirs[1]["train_sequences"]
    assert ours[1]["valid"] != theirs[1]["valid"]  # and trains the successor on them differently
    bad = cli([*ARGS, "--synthetic-weight", "2", "--resume", "--out", str(run)])
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "Traceback" not in bad.stderr
    assert "train.synthetic_weight 0.5 -> 2.0" in bad.stderr


def test_latest_synthetic_rows_replace_the_last_rounds_instead_of_adding_to_them(reference_run, tmp_path):
    run = tmp_path / "latest"
    two = ["loop", "--iterations", "2", *ARGS[3:], "--synthetic-rows", "latest"]
    r = cli([*two, "--out", str(run), "--branch-from", str(reference_run)])
    assert r.returncode == 0, r.stderr
    ours, theirs = (json.loads((x / "report.json").read_text())["iterations"] for x in (run, reference_run))
    for k in (0, 1):   # D_1 = D_0 + S_1 either way: the same round 1, digit for digit
        assert [ours[k][x] for x in ("train_sequences", "valid", "test")] == \
               [theirs[k][x] for x in ("train_sequences", "valid", "test")]
    rows = lambda f: [line.split()[1:] for line in (run / f).read_text().splitlines()]   # without the user id
    real = rows("iter0/train_augmented.txt")[:943]
    assert rows("iter1/train_augmented.txt") == real + rows("iter1/synthetic.txt")   # D_2 = D_0 + S_2
    assert ours[2]["train_sequences"] == 943 + len(rows("iter1/synthetic.txt"))
    bad = cli([*two[:-1], "all", "--resume", "--out", str(run)])
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "synthetic_rows latest -> all" in bad.stderr


def test_resume_and_branch_refuse_other_data_under_the_same_name(reference_run, tmp_path):
    """A data file edited after the run started (same --data, other content) is refused
    before anything is written: the iteration-0 checkpoint records the data it saw."""
    import shutil
    from rsir_trt.data import open_dataset, write_sequences
    ml = open_dataset(None)
    seqs = [s.copy() for s in ml.sequences]
    seqs[0][[0, 1]] = seqs[0][[1, 0]]                                   # one user's first two items swapped
    edited = tmp_path / "ml.txt"
    write_sequences(edited, ml.users, seqs, ml.item_tokens)
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**cfg, "data": str(edited)}))   # as if started on that file
    before = sorted(p.name for p in copy.rglob("*"))
    r = cli([*ARGS, "--data", str(edited), "--out", str(copy), "--resume"])
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "iter0/sasrec.pt: the model was trained on ml-100k (943 users" in r.stderr
    assert "resume it with the data it was started with" in r.stderr
    assert sorted(p.name for p in copy.rglob("*")) == before
    r = cli([*ARGS, "--data", str(edited), "--out", str(tmp_path / "new"), "--branch-from", str(copy)])
    assert r.returncode == 2 and "branch from a run of this data" in r.stderr and not (tmp_path / "new").exists()


def test_branch_from_a_corrupt_run_is_one_error_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{ not json")
    r = cli([*ARGS, "--out", str(tmp_path / "new"), "--branch-from", str(src)])
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "not a loop config" in r.stderr and not (tmp_path / "new").exists()


def test_stop_early_ends_the_loop_when_validation_stops_improving(tmp_path):
    # length batches: with these settings iteration 1 scores below iteration 0 on validation
    run = tmp_path / "stop"
    args = [("3" if a == "1" and ARGS[i - 1] == "--iterations" else a) for i, a in enumerate(ARGS)]
    r = cli([*args, "--batching", "length", "--stop-early", "--out", str(run)])
    assert r.returncode == 0, r.stderr
    report = json.loads((run / "report.json").read_text())
    valid = [x["valid"]["ndcg@20"] for x in report["iterations"]]
    assert len(valid) == 2 and valid[1] <= valid[0]           # stopped after iteration 1 of 3
    assert report["selected_iteration"] == 0
    assert not (run / "iter1" / "engine.onnx").exists()        # nothing generated from the worse model


def test_a_run_from_before_batching_existed_resumes_only_with_length_batches(reference_run, tmp_path):
    import shutil
    run = tmp_path / "old"
    shutil.copytree(reference_run, run)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"].pop("batching") == "random"                # the default now
    assert cfg["train"].pop("lr_drops") == 0                       # nor --lr-drops: read as 0, its default
    (run / "config.json").write_text(json.dumps(cfg))              # as written before the option
    r = cli([*ARGS, "--out", str(run), "--resume"])
    assert r.returncode == 2 and "different settings (train.batching length -> random)" in r.stderr, r.stderr
    r = cli([*ARGS, "--out", str(run), "--resume", "--batching", "length"])
    assert r.returncode == 0, r.stderr


def test_the_run_records_its_machine_and_a_resume_elsewhere_warns(reference_run, tmp_path):
    import shutil
    run = tmp_path / "moved"
    shutil.copytree(reference_run, run)
    state = json.loads((run / "state.json").read_text())
    here = state["machine"]
    assert here["threads"] == 2 and here["torch_isa"] and here["cpu"]
    for f in ("iter0/metrics-sasrec.json", "iter1/metrics-sasrec.json"):
        assert json.loads((run / f).read_text())["machine"] == here, f
    # an ONNX Runtime generation computes nothing in torch, so it records no torch fields
    without_torch = {k: v for k, v in here.items() if k not in ("torch", "torch_isa")}
    assert json.loads((run / "iter0/generation.json").read_text())["machine"] == without_torch
    same = cli([*ARGS, "--out", str(run), "--resume"])
    assert same.returncode == 0 and "warning" not in same.stdout, same.stdout
    state["machine"] = {**here, "torch_isa": "AVX2" if here["torch_isa"] != "AVX2" else "AVX512"}
    (run / "state.json").write_text(json.dumps(state))
    moved = cli([*ARGS, "--out", str(run), "--resume"])
    assert moved.returncode == 0, moved.stderr
    assert "warning:" in moved.stdout and f"-> {here['torch_isa']}" in moved.stdout, moved.stdout


def test_seeds_run_as_their_standalone_loops_and_are_compared(reference_run, tmp_path):
    root = tmp_path / "seeds"
    # RSIR_THREADS=2 and one job: each seed's loop runs at 2 threads, as reference_run did
    r = cli([*SEEDLESS, "--seeds", "3,4", "--jobs", "1", "--out", str(root)])
    assert r.returncode == 0, r.stderr
    assert "seed 3: done" in r.stdout and "seed 4: done" in r.stdout
    assert fingerprint(root / "seed-3") == fingerprint(reference_run)
    assert fingerprint(root / "seed-4")[1] != fingerprint(reference_run)[1]
    summary = json.loads((root / "compare.json").read_text())
    assert summary["runs"] == [str(root / "seed-3"), str(root / "seed-4")]
    assert "2 runs" in (root / "compare.md").read_text()
    # seed 4's last model as in a run from before the ranks were recorded: evaluated again
    (root / "seed-4" / "iter1" / "test-ranks-sasrec.npz").rename(tmp_path / "ranks.npz")
    by = cli(["compare", str(root / "seed-3"), str(root / "seed-4"), "--by-length", "30", "--by-popularity", "50",
              "--out", str(tmp_path / "c")])
    assert by.returncode == 0, by.stderr
    assert " ".join(by.stdout.split()).count("evaluated again") == 1
    c = json.loads((tmp_path / "c.json").read_text())
    split, heads = (c[s]["iterations"][0]["buckets"] for s in ("by_length", "by_popularity"))
    assert [b["history"] for b in split] == ["1-30", "31+", "all"] and split[0]["users"] + split[1]["users"] == 943
    assert [b["target_rank"] for b in heads] == ["1-50", "51+", "all"] and heads[0]["users"] + heads[1]["users"] == 943
    # the 'all' row: the loops' own test gains, to rounding (recorded and re-evaluated alike)
    for rows in (split, heads):
        assert rows[2]["own_gains"]["recall@10"] == pytest.approx(summary["iterations"][1]["own_gains"], abs=1e-6)
    assert "| target rank | users |" in (tmp_path / "c.md").read_text()
    (tmp_path / "ranks.npz").rename(root / "seed-4" / "iter1" / "test-ranks-sasrec.npz")
    again = cli([*SEEDLESS, "--seeds", "3,4", "--out", str(root)])
    assert again.returncode == 2 and "run directory exists" in again.stderr
    resumed = cli([*SEEDLESS, "--seeds", "3,4", "--out", str(root), "--resume"])  # both finished: nothing redone
    assert resumed.returncode == 0, resumed.stderr
    assert fingerprint(root / "seed-3") == fingerprint(reference_run)
    assert json.loads((root / "compare.json").read_text()) == summary
    bad = cli([*SEEDLESS, "--seeds", "3,4", "--tau", "5", "--branch-from", str(tmp_path), "--out", str(tmp_path / "b")])
    assert bad.returncode == 2 and "seed-3: not a run directory" in bad.stderr
    assert not (tmp_path / "b").exists()


def test_a_resumed_run_rebuilds_an_engine_of_an_older_format(reference_run, tmp_path):
    """A run killed after its export and resumed by a newer rsir-trt whose engine contract
    changed: the engine is rebuilt from the checkpoint and nothing else changes."""
    import shutil
    import onnx
    run = tmp_path / "old"
    shutil.copytree(reference_run, run)
    engine = run / "iter0" / "engine.onnx"
    proto = onnx.load(str(engine))
    meta = json.loads(proto.metadata_props[0].value)
    proto.metadata_props[0].value = json.dumps({**meta, "format": "rsir-trt/engine/1"})
    onnx.save(proto, str(engine))
    (run / "state.json").write_text(json.dumps({"done": ["iter0/train-sasrec", "iter0/export"]}))
    r = cli([*ARGS, "--out", str(run), "--resume"])
    assert r.returncode == 0, r.stderr
    assert "older rsir-trt" in r.stdout
    assert json.loads(onnx.load(str(engine)).metadata_props[0].value)["format"] != "rsir-trt/engine/1"
    assert fingerprint(run) == fingerprint(reference_run)


def test_a_capped_round_adds_at_most_one_sequence_per_seed(reference_run, tmp_path):
    run = tmp_path / "capped"
    r = cli([*ARGS, "--cap-per-seed", "1", "--out", str(run), "--branch-from", str(reference_run)])
    assert r.returncode == 0, r.stderr
    gen = json.loads((run / "iter0" / "generation.json").read_text())
    full = json.loads((reference_run / "iter0" / "generation.json").read_text())
    assert gen["kept"] == full["kept"] and gen["acquisition"]["candidates"] == full["kept"]  # same generation
    seeds = [line.split("\t")[1] for line in (run / "iter0" / "synthetic.txt.provenance.tsv").read_text().splitlines()[1:]]
    assert len(seeds) == len(set(seeds)) == gen["acquisition"]["kept"] < full["kept"]
    report = json.loads((run / "report.json").read_text())["iterations"]
    assert report[1]["generated_kept"] == len(seeds)
    assert report[1]["train_sequences"] == report[0]["train_sequences"] + len(seeds)
    bad = cli([*ARGS, "--acquire", "random", "--out", str(tmp_path / "bad")])
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "--acquire" in bad.stderr
    assert not (tmp_path / "bad").exists()
