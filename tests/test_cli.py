"""Bad input on every command: one clear line, exit 2, no traceback, no partial output."""
import json

import torch
import pytest

from rsir_trt.build import build_engine
from rsir_trt.cli import main
from rsir_trt.data import open_dataset


@pytest.fixture(scope="module")
def files(tmp_path_factory, sasrec_ckpt):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.txt").write_text("")
    (d / "malformed.txt").write_text("1 2 3 4\n2 5 x 7\n")
    (d / "short.txt").write_text("1 2 3 4\n2 5\n")
    (d / "foreign_items.txt").write_text("1 99991 99992 99993 99994\n")
    (d / "other_users.txt").write_text("1 1 2 3 4\n2 5 6 7 8\n")   # valid ml-100k item ids, other users
    ml = open_dataset(None)
    first = ml.item_tokens[ml.sequences[0][0]]
    other = next(t for t in ml.item_tokens[1:] if t != first)
    (d / "other_rows.txt").write_text(f"2000 {other} {first} {other}9\n".replace(f"{other}9", ml.item_tokens[5]))
    (d / "other_rows.txt.provenance.tsv").write_text(f"synthetic_user\tseed_user\titeration\n2000\t{ml.users[0]}\t1\n")
    (d / "garbage.pt").write_bytes(b"this is not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, d / "foreign.pt")
    payload = torch.load(sasrec_ckpt, weights_only=True)
    payload["state_dict"]["blocks.0.qkv.weight"][0, 0] = float("nan")
    torch.save(payload, d / "nan.pt")
    payload = torch.load(sasrec_ckpt, weights_only=True)
    payload["model"]["dim"] = 32
    torch.save(payload, d / "misfit.pt")
    raw = sasrec_ckpt.read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    build_engine(sasrec_ckpt, d / "engine", "onnxruntime")
    onnx = (d / "engine.onnx").read_bytes()
    (d / "truncated.onnx").write_bytes(onnx[: len(onnx) // 2])
    (d / "a_file").write_text("x")
    return d


CASES = [
    # data / train
    ("data-missing", "train --data {d}/nope.txt", r"nope.txt: no such file"),
    ("data-empty", "train --data {d}/empty.txt", r"empty.txt: file is empty"),
    ("data-malformed", "train --data {d}/malformed.txt", r"malformed.txt:2: item id 'x'"),
    ("data-short-user", "train --data {d}/short.txt", r"user 2 has 1 interaction"),
    ("data-unknown-name", "data stats --data imaginary", r"not a known dataset"),
    ("data-format", "data stats --data {d}/malformed.txt --format parquet", r"--format: unknown format 'parquet'"),
    ("train-model", "train --model bert --epochs 1 --out {o}", r"--model: unknown model 'bert'"),
    ("train-loss", "train --loss hinge --out {o}", r"--loss: 'hinge'"),
    ("train-batch", "train --batch-size 0 --out {o}", r"--batch-size must be >= 1"),
    ("train-epochs", "train --epochs 0 --out {o}", r"--epochs must be >= 1"),
    ("train-weight-decay", "train --weight-decay -1 --out {o}", r"--weight-decay must be >= 0"),
    ("train-dim", "train --dim 0 --out {o}", r"--dim must be >= 1"),
    ("train-ffn", "train --ffn-mult 0 --out {o}", r"--ffn-mult must be >= 1"),
    ("train-dropout", "train --dropout 1 --out {o}", r"--dropout must be in \[0, 1\)"),
    ("train-diverges", "train --lr 1000 --dropout 0 --epochs 3 --out {o}", r"training diverged in epoch 1 \(loss nan\); lower --lr"),
    ("train-maxlen", "train --max-len 2 --out {o}", r"--max-len must be at least 3"),
    ("train-layout", "train --layout pre --out {o}", r"--layout: 'pre' is not one of recbole, kang"),
    ("train-batching", "train --batching sorted --out {o}", r"--batching: 'sorted' is not one of random, length"),
    ("train-layout-gru", "train --model gru4rec --layout kang --out {o}", r"--layout kang applies to SASRec only"),
    ("export-extra-missing", "data export-recbole --extra {d}/nope.txt --out {o}", r"nope.txt: no such file"),
    ("train-out-under-file", "train --out {d}/a_file/run", r"--out .*a_file/run: cannot create .*Not a directory"),
    ("train-out-is-file", "train --out {d}/a_file", r"exists and is not a directory"),
    # evaluate
    ("eval-garbage", "evaluate {d}/garbage.pt", r"garbage.pt: not a readable rsir-trt checkpoint"),
    ("eval-truncated", "evaluate {d}/truncated.pt", r"truncated.pt: not a readable rsir-trt checkpoint"),
    ("eval-foreign", "evaluate {d}/foreign.pt", r"foreign.pt: not a rsir-trt checkpoint"),
    ("eval-nan-weights", "evaluate {d}/nan.pt", r"nan.pt: non-finite weights in blocks.0.qkv.weight"),
    ("build-misfit", "build-engine {d}/misfit.pt --out {o}", r"misfit.pt: weights do not fit its model config"),
    ("eval-missing", "evaluate {d}/missing.pt", r"missing.pt: no such checkpoint"),
    ("eval-split", "evaluate {ckpt} --split train", r"unknown split 'train'"),
    ("eval-by-length", "evaluate {ckpt} --by-length 10,5", r"--by-length: give increasing history lengths >= 1, got '10,5'"),
    ("eval-by-length-text", "evaluate {ckpt} --by-length 5,x", r"--by-length: '5,x' is not a comma-separated list"),
    ("eval-by-popularity", "evaluate {ckpt} --by-popularity 0,100", r"--by-popularity: give increasing popularity ranks >= 1, got '0,100'"),
    ("eval-other-data", "evaluate {ckpt} --data {d}/other_users.txt",
     r"--data .*other_users.txt: the model was trained on ml-100k \(943 users, 39,929 interactions\), not on this "
     r"data \(other_users \(2 users, 8 interactions\)\); --other-data uses it anyway"),
    # build-engine
    ("build-garbage", "build-engine {d}/garbage.pt --out {o}", r"not a readable rsir-trt checkpoint"),
    ("build-backend", "build-engine {ckpt} --backend openvino --out {o}", r"--backend: 'openvino'"),
    ("build-topk", "build-engine {ckpt} --topk -1 --out {o}", r"--topk must be >= 0"),
    ("build-fp16-ort", "build-engine {ckpt} --precision fp16 --backend onnxruntime --out {o}", r"--precision fp16 is for TensorRT"),
    ("build-out-under-file", "build-engine {ckpt} --out {d}/a_file/e", r"cannot create .*a_file \(File exists\)"),
    ("build-exporter", "build-engine {ckpt} --exporter magic --out {o}", r"--exporter: 'magic'"),
    # generate
    ("gen-tau", "generate --engine {d}/engine.onnx --out {o} --tau 0", r"--tau must be >= 1"),
    ("gen-p", "generate --engine {d}/engine.onnx --out {o} --p 1.5", r"--p must be in \[0, 1\]"),
    ("gen-m", "generate --engine {d}/engine.onnx --out {o} --m 0", r"--m must be >= 1"),
    ("gen-batch", "generate --engine {d}/engine.onnx --out {o} --batch-size 0", r"--batch-size must be >= 1"),
    ("gen-other-data", "generate --engine {d}/engine.onnx --data {d}/other_users.txt --out {o}",
     r"--data .*other_users.txt: the model was trained on ml-100k .*--other-data uses it anyway"),
    ("gen-other-data-torch", "generate --engine {ckpt} --data {d}/other_users.txt --out {o}", r"--other-data"),
    ("gen-extra-other-data", "generate --engine {d}/engine.onnx --extra {d}/other_rows.txt --out {o}",
     r"--extra .*other_rows.txt: synthetic user 2000 does not start with the first item of its seed user"),
    ("gen-other-vocab", "generate --engine {d}/engine.onnx --data {d}/foreign_items.txt --out {o}", r"not in the model's vocabulary"),
    ("gen-truncated", "generate --engine {d}/truncated.onnx --out {o}", r"truncated.onnx: not a readable ONNX file|cannot load"),
    ("gen-foreign-engine", "generate --engine {d}/garbage.pt --out {o}", r"not a readable rsir-trt checkpoint"),
    ("gen-wrong-backend", "generate --engine {d}/engine.onnx --backend tensorrt --out {o}", r"cannot run on the tensorrt backend"),
    ("gen-smax", "generate --engine {d}/engine.onnx --max-len 80 --out {o}", r"S_max is 50, request needs 80"),
    ("gen-no-topk", "generate --engine {d}/engine.onnx --sample-topk 5 --out {o}", r"--topk >= 5"),
    ("gen-out-under-file", "generate --engine {d}/engine.onnx --out {d}/a_file/x.txt", r"cannot create .*a_file \(File exists\)"),
    ("gen-read-only-dir", "generate --engine {d}/engine.onnx --out /sys/rsir-test.txt", r"cannot write in /sys"),
    ("train-read-only-dir", "train --out /sys/rsir-run", r"--out /sys/rsir-run: cannot create"),
    ("build-read-only-dir", "build-engine {ckpt} --out /sys/rsir-e", r"cannot write in /sys"),
    ("gen-provider", "generate --engine {d}/engine.onnx --provider cuda --out {o}", r"CUDAExecutionProvider is not available"),
    # loop
    ("loop-iterations", "loop --iterations 0 --out {o}", r"--iterations must be >= 1"),
    ("loop-tau", "loop --tau 0 --out {o}", r"--tau must be >= 1"),
    ("loop-p", "loop --p -0.1 --out {o}", r"--p must be in \[0, 1\]"),
    ("loop-weight-decay", "loop --weight-decay -0.5 --out {o}", r"--weight-decay must be >= 0"),
    ("loop-synthetic-weight", "loop --synthetic-weight 0 --out {o}", r"--synthetic-weight must be > 0"),
    ("loop-synthetic-rows", "loop --synthetic-rows last --out {o}", r"--synthetic-rows: 'last' is not one of all \| latest"),
    ("loop-min-len", "loop --min-len 51 --out {o}", r"--max-len 50 must be >= --min-len 51 >= 1"),
    ("loop-backend", "loop --backend tvm --out {o}", r"--backend: 'tvm'"),
    ("loop-layout", "loop --layout pre --out {o}", r"--layout: 'pre' is not one of recbole, kang"),
    ("loop-batching", "loop --batching bucket --out {o}", r"--batching: 'bucket' is not one of random, length"),
    ("loop-start", "loop --start middle --out {o}", r"--start: 'middle' is not one of first, prefix, item"),
    ("loop-gen-batch", "loop --gen-batch 0 --out {o}", r"--gen-batch must be >= 1"),
    ("loop-temperature", "loop --sample-topk 5 --temperature 0 --out {o}", r"--temperature > 0"),
    ("loop-resume-nothing", "loop --resume --out {o}", r"nothing to resume"),
    ("loop-seeds", "loop --seeds 1,x --out {o}", r"--seeds: '1,x' is not a comma-separated list of integers"),
    ("loop-seeds-one", "loop --seeds 3 --out {o}", r"--seeds: give two or more different seeds"),
    ("loop-seeds-jobs", "loop --seeds 1,2 --jobs 0 --out {o}", r"--jobs must be >= 1"),
    ("loop-seed-and-seeds", "loop --seed 5 --seeds 1,2 --out {o}", r"--seed and --seeds: give one"),
    ("loop-teacher", "loop --teacher sasrec2 --out {o}", r"--teacher: unknown model 'sasrec2'"),
    ("loop-student", "loop --teacher gru4rec --student hstu --out {o}", r"--student: unknown model 'hstu'"),
    ("loop-heads", "loop --dim 7 --out {o}", r"--dim 7 is not divisible by --heads 2"),
    ("loop-out-under-file", "loop --out {d}/a_file/run", r"--out .*a_file/run: cannot create .*Not a directory"),
]


@pytest.mark.parametrize("name,argv,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(name, argv, message, files, sasrec_ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    args = argv.format(d=files, o=out, ckpt=sasrec_ckpt).split()
    before = sorted(p.name for p in files.iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    import re
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists() or not any(out.iterdir()) if out.is_dir() else not out.exists()
    if name.startswith(("train-", "loop-")) and name != "train-diverges" and "--out {o}" in argv:
        assert not out.exists()   # settings are checked before the run directory is made
    assert sorted(p.name for p in files.iterdir()) == before   # nothing written beside the inputs


def test_case_count():
    assert len(CASES) >= 25


def test_existing_run_needs_resume_and_same_settings(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["loop", "--iterations", "1", "--epochs", "1", "--m", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["loop", "--iterations", "1", "--epochs", "1", "--m", "1", "--out", str(run)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["loop", "--iterations", "1", "--epochs", "1", "--m", "2", "--out", str(run), "--resume"]) == 2
    assert "different settings (gen.m 1 -> 2)" in capsys.readouterr().err


def test_default_outputs_are_made_in_a_fresh_checkout(tmp_path, monkeypatch, capsys):
    """runs/ and engines/ are git-ignored, so a fresh clone has neither: --out's missing
    folders are made (the README's quick start runs `loop` with no --out)."""
    monkeypatch.chdir(tmp_path)
    rows = [f"{u + 1} " + " ".join(str(1 + (u * 7 + k) % 40) for k in range(6)) for u in range(30)]
    (tmp_path / "tiny.txt").write_text("\n".join(rows) + "\n")
    assert main(["loop", "--data", "tiny.txt", "--iterations", "1", "--epochs", "1", "--m", "1"]) == 0
    assert (tmp_path / "runs" / "loop-tiny" / "report.md").is_file()
    (tmp_path / "runs").rename(tmp_path / "runs-loop")
    assert main(["train", "--data", "tiny.txt", "--epochs", "1"]) == 0
    assert (tmp_path / "runs" / "tiny-sasrec" / "model.pt").is_file()
    assert main(["build-engine", "runs/tiny-sasrec"]) == 0
    assert (tmp_path / "engines" / "tiny-sasrec.onnx").is_file()
    # an explicit --out's missing folders are made too
    assert main(["generate", "-e", "engines/tiny-sasrec.onnx", "--data", "tiny.txt", "--m", "1",
                 "--out", "syn/round1/x.txt"]) == 0
    assert (tmp_path / "syn" / "round1" / "x.txt.json").is_file()
    capsys.readouterr()


def test_commands_work_end_to_end(sasrec_ckpt, tmp_path, capsys):
    assert main(["evaluate", str(sasrec_ckpt), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(sasrec_ckpt), "--json", "--by-length", "20,50,100"]) == 0
    split = json.loads(capsys.readouterr().out)
    buckets = split.pop("by_length")
    assert split == whole and buckets[-1] == {"history": "all", "users": 943, **whole}
    assert [b["history"] for b in buckets[:-1]] == ["1-20", "21-50"]   # ml-100k at max_len 50: no 51+ user
    assert sum(b["users"] for b in buckets[:-1]) == 943
    assert sum(b["users"] * b["recall@10"] for b in buckets[:-1]) == pytest.approx(943 * whole["recall@10"])
    assert main(["evaluate", str(sasrec_ckpt), "--json", "--by-popularity", "10,100"]) == 0
    heads = json.loads(capsys.readouterr().out)["by_popularity"]
    assert [b["target_rank"] for b in heads] == ["1-10", "11-100", "101+", "all"] and heads[-1]["users"] == 943
    assert sum(b["users"] * b["recall@10"] for b in heads[:-1]) == pytest.approx(943 * whole["recall@10"])
    assert heads[0]["recall@10"] > heads[2]["recall@10"]   # the most trained items are the easiest targets
    assert main(["build-engine", str(sasrec_ckpt), "--out", str(tmp_path / "e")]) == 0
    out = tmp_path / "syn.txt"
    assert main(["generate", "--engine", str(tmp_path / "e.onnx"), "--out", str(out), "--m", "1"]) == 0
    lines = out.read_text().splitlines()
    assert lines and all(len(line.split()) >= 4 for line in lines)     # user + >= 3 items
    assert int(lines[0].split()[0]) > 943                                # fresh synthetic user ids
    assert (tmp_path / "syn.txt.json").exists() and (tmp_path / "syn.txt.provenance.tsv").exists()


def test_generate_on_onnx_and_data_commands_load_neither_torch_nor_onnx(sasrec_ckpt, tmp_path):
    """Importing torch and onnx took 1.3-4 s of a 3-4 s whole-Beauty `generate` (README);
    the commands that compute nothing in torch run without them, in a fresh process."""
    import subprocess
    import sys
    build_engine(sasrec_ckpt, tmp_path / "e", "onnxruntime")
    script = (
        "import sys\n"
        "from rsir_trt.cli import main\n"
        f"assert main(['generate', '--engine', {str(tmp_path / 'e.onnx')!r}, '--out', {str(tmp_path / 's.txt')!r}, '--m', '1']) == 0\n"
        "assert main(['data', 'stats']) == 0\n"
        "print(sorted(m for m in ('torch', 'onnx') if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "[]"
    assert "torch" not in json.loads((tmp_path / "s.txt.json").read_text())["machine"]


def test_bench_runs_and_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "--vocab", "500", "--batch", "2,8", "--steps", "3", "--warmup", "1",
                 "--gen-seeds", "20", "--gen-repeats", "2", "--out", str(out)]) == 0
    import json
    r = json.loads((out / "bench.json").read_text())
    assert r["settings"]["torch_isa"] and r["settings"]["cpu"]   # the numbers name their machine
    runtimes = {row["runtime"] for row in r["steps"]}
    assert {"bound (matmul+topk)", "reference", "torch", "onnxruntime"} <= runtimes
    assert all(row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] for row in r["steps"])
    assert all(row["same_output_as_first"] and row["repeats_identical"] for row in r["generation"])
    # two timed runs each: the median between their min and max, the rate from the median
    assert all(row["repeats"] == 2 and row["seconds_min"] <= row["seconds"] <= row["seconds_max"]
               and row["sequences_per_s"] == pytest.approx(row["trajectories"] / row["seconds"])
               and row["untimed_first_seconds"] > 0 for row in r["generation"])
    ort = next(row for row in r["generation"] if row["runtime"] == "onnxruntime")
    assert ort["workers"] == min(r["settings"]["threads"], 20)  # one shard per thread (20 trajectories)
    if ort["workers"] > 1:  # then timed as one worker too
        assert any(row["runtime"] == "onnxruntime, 1 worker" and row["workers"] == 1 for row in r["generation"])
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv,message", [
    ("bench --batch 0,4", r"--batch: values must be >= 1"),
    ("bench --batch a,b", r"--batch: 'a,b' is not a comma-separated list"),
    ("bench --runtimes tvm", r"--runtimes: unknown 'tvm'"),
    ("bench --device cuda", r"--device cuda: not available here"),
    ("bench --gen-repeats 0", r"--gen-repeats must be >= 1, got 0"),
    ("bench --warmup -1", r"--warmup must be >= 0, got -1"),
    ("bench --layers 0", r"--layers must be >= 1, got 0"),
    ("bench --ckpt {ckpt} --data {other} --batch 2", r"--data .*other.txt: the model was trained on ml-100k"),
])
def test_bench_bad_input(argv, message, sasrec_ckpt, tmp_path, capsys):
    import re
    other = tmp_path / "other.txt"
    other.write_text("1 1 2 3 4\n")
    assert main(argv.format(ckpt=sasrec_ckpt, other=other).split()) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err)


def test_generate_can_seed_from_an_earlier_round(sasrec_ckpt, tmp_path, capsys):
    assert main(["build-engine", str(sasrec_ckpt), "--out", str(tmp_path / "e")]) == 0
    first, second = tmp_path / "r1.txt", tmp_path / "r2.txt"
    assert main(["generate", "-e", str(tmp_path / "e.onnx"), "--out", str(first), "--m", "1"]) == 0
    assert main(["generate", "-e", str(tmp_path / "e.onnx"), "--out", str(second), "--m", "1",
                 "--extra", str(first), "--synthetic-seeds"]) == 0
    import json
    a = json.loads((tmp_path / "r1.txt.json").read_text())
    b = json.loads((tmp_path / "r2.txt.json").read_text())
    assert b["trajectories"] == a["trajectories"] + a["kept"]   # the first round's rows seed too
    prov = (tmp_path / "r2.txt.provenance.tsv").read_text().splitlines()[1:]
    assert prov and all(1 <= int(line.split("\t")[1]) <= 943 for line in prov)   # real seed users
    capsys.readouterr()
    assert main(["generate", "-e", str(tmp_path / "e.onnx"), "--out", str(tmp_path / "x.txt"),
                 "--synthetic-seeds"]) == 2
    assert "--synthetic-seeds needs --extra" in capsys.readouterr().err


def test_other_data_runs_only_when_asked(sasrec_ckpt, tmp_path, capsys):
    """Integer item ids make another dataset's items valid ids of this model: the recorded
    training data tells them apart, and --other-data lets a user seed from other users."""
    from rsir_trt.engine_meta import read_onnx_meta
    other = tmp_path / "other.txt"
    other.write_text("".join(f"{u} {u} {u + 1} {u + 2} {u + 3}\n" for u in range(1, 41)))
    assert main(["build-engine", str(sasrec_ckpt), "--out", str(tmp_path / "e")]) == 0
    trained_on = read_onnx_meta(tmp_path / "e.onnx").data
    assert trained_on["name"] == "ml-100k" and trained_on["users"] == 943 and len(trained_on["fingerprint"]) == 16
    out = tmp_path / "syn.txt"
    capsys.readouterr()
    assert main(["generate", "-e", str(tmp_path / "e.onnx"), "--data", str(other), "--out", str(out)]) == 2
    assert "other (40 users, 160 interactions)" in capsys.readouterr().err and not out.exists()
    assert main(["generate", "-e", str(tmp_path / "e.onnx"), "--data", str(other), "--out", str(out),
                 "--other-data"]) == 0
    assert out.exists()
    assert main(["evaluate", str(sasrec_ckpt), "--data", str(other), "--other-data"]) == 0
    assert main(["evaluate", str(sasrec_ckpt), "--data", "ml-100k"]) == 0   # the training data by name
