"""The loop report's choice of iteration: by validation only, earliest on ties."""
import numpy as np

from rsir_trt.report import KEYS, markdown, selected


def row(k, valid_ndcg20, test_recall10):
    valid = dict.fromkeys(KEYS, 0.1) | {"ndcg@20": valid_ndcg20}
    test = dict.fromkeys(KEYS, 0.05) | {"recall@10": test_recall10}
    return {"iteration": k, "valid": valid, "test": test, "train_sequences": 10, "train_interactions": 50,
            "train_seconds": 1.0, "best_epoch": 1, "generated_kept": 0, "generation_seconds": 0.0,
            "generation_seq_per_s": 0.0}


def test_selection_ignores_test_and_takes_the_earliest_tie():
    rows = [row(0, 0.030, 0.040), row(1, 0.036, 0.041), row(2, 0.036, 0.050), row(3, 0.035, 0.060)]
    assert selected(rows) == 1


def test_markdown_states_the_selected_iteration_and_its_gain():
    text = markdown([row(0, 0.030, 0.040), row(1, 0.031, 0.042)])
    assert "iteration 1, test R@10 0.0420 (+5.0% over iteration 0)" in text
    assert "| 0.0310 |" in text  # the selection metric is a column


def test_report_buckets_by_target_rank_by_hand():
    """The report's tables by history and by target popularity: a bucket's change is over
    its own iteration 0, and none is printed where that was 0 (no relative change from 0)."""
    from rsir_trt.report import users_markdown
    from rsir_trt.user_groups import metrics_by_group
    ranks0, ranks1 = np.array([0, 30, 30, 2]), np.array([0, 5, 30, 30])   # 4 users; R@10 0.5 -> 0.5
    target_rank, history = np.array([1, 50, 500, 3]), np.array([2, 8, 12, 4])
    users = {"change_ci95_over_users": [{"recall@10": [0.0, 0.0], "ndcg@10": [0.0, 0.0]}],
             "by_length": [metrics_by_group(r, history, [5]) for r in (ranks0, ranks1)],
             "by_popularity": [metrics_by_group(r, target_rank, [3, 100], "target_rank") for r in (ranks0, ranks1)]}
    text = users_markdown(users)
    assert "| 1-5 | 2 | 1.0000 | 0.5000 (-50.0%) |" in text and "| 6+ | 2 | 0.0000 | 0.5000 |" in text
    assert "| target rank | users | iter 0 | iter 1 |" in text
    assert "| 1-3 | 2 | 1.0000 | 0.5000 (-50.0%) |" in text and "| 4-100 | 1 | 0.0000 | 1.0000 |" in text
    assert "| 101+ | 1 | 0.0000 | 0.0000 |" in text and "| all | 4 | 0.5000 | 0.5000 (+0.0%) |" in text


def write_run(root, seed, rows, tau=10):
    """A loop run directory as the loop leaves it after len(rows) finished iterations."""
    import json
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"data": "beauty", "seed": seed, "iterations": 3,
                                                  "gen": {"tau": tau, "seed": seed}, "train": {"lr": 1e-3, "seed": seed}}))
    for r in rows:
        (root / f"iter{r['iteration']}").mkdir()
        (root / f"iter{r['iteration']}" / "metrics-sasrec.json").write_text(json.dumps(
            {k: r[k] for k in ("valid", "test", "train_sequences", "train_interactions", "train_seconds", "best_epoch")}))
    return root


def test_compare_over_seeds_by_hand(tmp_path):
    from rsir_trt.cli import main
    from rsir_trt.replicates import load_run, markdown, summarise
    a = write_run(tmp_path / "a", 0, [row(0, 0.030, 0.040), row(1, 0.032, 0.044)])
    b = write_run(tmp_path / "b", 1, [row(0, 0.030, 0.050), row(1, 0.029, 0.050), row(2, 0.031, 0.060)])
    s = summarise([load_run(a), load_run(b)])
    assert len(s["iterations"]) == 2  # the iterations every run has, and the table says so
    assert "(iterations 0-1 only: not every run has more)" in markdown(s)
    it0, it1 = s["iterations"]
    assert abs(it0["mean"]["recall@10"] - 0.045) < 1e-12
    assert abs(it0["sd"]["recall@10"] - 0.01 / 2 ** 0.5) < 1e-12     # sample sd of 0.040, 0.050
    assert abs(it1["gain_of_means"]["recall@10"] - 100 * (0.047 / 0.045 - 1)) < 1e-9
    assert [round(g, 9) for g in it1["own_gains"]] == [10.0, 0.0]
    assert s["selected"] == [1, 0] and [round(g, 9) for g in s["selected_gains"]] == [10.0, 0.0]
    # paired: own gains +10% and 0%, mean 5, sd 50 ** 0.5, t(1) = 12.706: 5 +- 12.706 * 5
    assert [round(x, 9) for x in it1["own_gain_ci95"]] == [5.0, round(12.706 * 5, 9)]
    assert "| 1 | 0.0470 ± 0.0042 | +4.4% | +10.0%, +0.0% | +5.0% [-58.5, +68.5] |" in markdown(s)  # sd of 0.044, 0.050
    assert "| 0 | 0.0450 ± 0.0071 | +0.0% | +0.0%, +0.0% | - |" in markdown(s)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "seeds")]) == 0
    assert (tmp_path / "seeds.md").read_text() == markdown(s)
    assert (tmp_path / "seeds.json").exists()


def test_compare_refuses_what_is_not_replicates(tmp_path, capsys):
    from rsir_trt.cli import main
    a = write_run(tmp_path / "a", 0, [row(0, 0.03, 0.04)])
    b = write_run(tmp_path / "b", 1, [row(0, 0.03, 0.05)], tau=12102)
    (tmp_path / "c" / "iter0").mkdir(parents=True)
    (tmp_path / "c" / "config.json").write_text("{}")
    (tmp_path / "c" / "iter0" / "metrics-sasrec.json").write_text("{not json")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text("{}")
    rerun = write_run(tmp_path / "a-again", 0, [row(0, 0.03, 0.05)])
    for args, message in [([a], "at least two run directories"),
                          ([a, b], "'gen.tau' is 12102, "),
                          ([a, rerun], f"a-again: seed 0 again ({a} ran it); compare counts each seed once"),
                          ([a, tmp_path / "none"], "none/config.json: missing"),
                          ([a, tmp_path / "c"], "unreadable loop metrics"),
                          ([a, tmp_path / "d"], "d: no iteration finished yet")]:
        assert main(["compare", *map(str, args), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "x.md").exists()


def test_compare_against_another_setting_seed_by_seed(tmp_path, capsys):
    from rsir_trt.cli import main
    from rsir_trt.replicates import contrast, contrast_markdown, load_run
    var = [write_run(tmp_path / "v0", 0, [row(0, 0.03, 0.040), row(1, 0.03, 0.044)], tau=12102),
           write_run(tmp_path / "v1", 1, [row(0, 0.03, 0.050), row(1, 0.03, 0.050)], tau=12102)]
    ctl = [write_run(tmp_path / "c1", 1, [row(0, 0.03, 0.050), row(1, 0.03, 0.045)]),
           write_run(tmp_path / "c0", 0, [row(0, 0.03, 0.040), row(1, 0.03, 0.042)])]
    con = contrast([load_run(r) for r in var], [load_run(r) for r in ctl])
    # own gains: variant +10%, 0%; control (paired by seed, not by order) +5%, -10%
    (it,) = con["iterations"]
    assert [round(x, 9) for x in it["differences"]["recall@10"]] == [5.0, 10.0]
    assert [round(x, 9) for x in it["ci95"]["recall@10"]] == [7.5, round(12.706 * 2.5, 9)]  # sd 5 / 2 ** 0.5
    assert con["differs_in"] == {"gen.tau": 12102} and con["same_iteration0"] and con["seeds"] == [0, 1]
    assert "| 1 | +5.0, +10.0 | +7.5 [-24.3, +39.3] |" in contrast_markdown(con)
    assert main(["compare", *map(str, var), "--against", f"{ctl[0]},{ctl[1]}", "--out", str(tmp_path / "vs")]) == 0
    assert "+7.5 [-24.3, +39.3]" in (tmp_path / "vs.md").read_text()
    assert "over the control's iteration 0" not in (tmp_path / "vs.md").read_text()   # = own gains here
    capsys.readouterr()
    other = write_run(tmp_path / "c2", 2, [row(0, 0.03, 0.04), row(1, 0.03, 0.04)])
    assert main(["compare", *map(str, var), "--against", str(ctl[0]), "--against", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--against: the two sides need the same seeds" in err and "Traceback" not in err
    assert main(["compare", *map(str, var), "--against", str(ctl[0])]) == 2   # a control of one run
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--against needs at least two run directories" in err


def test_a_variant_that_trains_otherwise_is_set_against_the_controls_baseline(tmp_path):
    """A variant with its own iteration 0 (other training settings): each of its iterations
    over the control's iteration 0, seed by seed, beside the difference of own gains."""
    from rsir_trt.replicates import contrast, contrast_markdown, load_run
    var = [write_run(tmp_path / "v0", 0, [row(0, 0.03, 0.036), row(1, 0.03, 0.042)], tau=12102),
           write_run(tmp_path / "v1", 1, [row(0, 0.03, 0.048), row(1, 0.03, 0.055)], tau=12102)]
    ctl = [write_run(tmp_path / "c0", 0, [row(0, 0.03, 0.040), row(1, 0.03, 0.041)]),
           write_run(tmp_path / "c1", 1, [row(0, 0.03, 0.050), row(1, 0.03, 0.050)])]
    con = contrast([load_run(r) for r in var], [load_run(r) for r in ctl])
    assert not con["same_iteration0"]
    base, one = con["over_control_iteration0"]
    assert [round(x, 9) for x in base["gains"]["recall@10"]] == [-10.0, -4.0]   # 0.036 / 0.040, 0.048 / 0.050
    assert [round(x, 9) for x in one["gains"]["recall@10"]] == [5.0, 10.0]      # 0.042 / 0.040, 0.055 / 0.050
    assert [round(x, 9) for x in one["ci95"]["recall@10"]] == [7.5, round(12.706 * 2.5, 9)]
    assert one["gains"]["ndcg@10"] == [0.0, 0.0]
    text = contrast_markdown(con)
    assert "| 0 | -10.0%, -4.0% | -7.0% [-45.1, +31.1] |" in text
    assert "| 1 | +5.0%, +10.0% | +7.5% [-24.3, +39.3] |" in text


def test_compare_measures_over_a_later_iteration_when_asked(tmp_path, capsys):
    """--base-iteration 1: every change is over each run's own iteration 1 (do later rounds add?)."""
    from rsir_trt.user_groups import markdown as by_length_md
    from rsir_trt.user_groups import summarise as by_length
    from rsir_trt.cli import main
    from rsir_trt.replicates import load_run, markdown, summarise
    a = write_run(tmp_path / "a", 0, [row(0, 0.03, 0.040), row(1, 0.03, 0.050), row(2, 0.03, 0.055)])
    b = write_run(tmp_path / "b", 1, [row(0, 0.03, 0.050), row(1, 0.03, 0.040), row(2, 0.03, 0.038)])
    s = summarise([load_run(a), load_run(b)], base=1)
    it0, it1, it2 = s["iterations"]
    assert [round(g, 9) for g in it2["own_gains"]] == [10.0, -5.0]          # 0.055 / 0.050, 0.038 / 0.040
    assert [round(g, 9) for g in it0["own_gains"]] == [-20.0, 25.0]         # iteration 0 over 1
    assert it1["own_gains"] == [0.0, 0.0]
    assert abs(it2["gain_of_means"]["recall@10"] - 100 * (0.0465 / 0.045 - 1)) < 1e-9
    assert [round(x, 9) for x in it2["own_gain_ci95"]] == [2.5, round(12.706 * 7.5, 9)]
    text = markdown(s)
    assert "Every change (Δ) below is over iteration 1 (--base-iteration), not over iteration 0." in text
    assert "| 1 | 0.0450 ± 0.0071 | +0.0% | +0.0%, +0.0% | - |" in text
    assert "| 2 | 0.0465 ± 0.0120 | +3.3% | +10.0%, -5.0% | +2.5% [-92.8, +97.8] |" in text
    assert "Every change" not in markdown(summarise([load_run(a), load_run(b)]))
    assert main(["compare", str(a), str(b), "--base-iteration", "1", "--out", str(tmp_path / "r1")]) == 0
    assert (tmp_path / "r1.md").read_text() == text
    # by history length, per bucket: the same arithmetic over the chosen iteration
    bucket = lambda r10: [{"history": "1-5", "users": 7, "recall@10": r10, "ndcg@10": 0.02}]
    per_run = [[bucket(0.04), bucket(0.05), bucket(0.055)], [bucket(0.05), bucket(0.04), bucket(0.038)]]
    split = by_length(["a", "b"], per_run, base=1)
    assert [it["iteration"] for it in split["iterations"]] == [0, 2]
    (two,) = split["iterations"][1]["buckets"]
    assert [round(g, 9) for g in two["own_gains"]["recall@10"]] == [10.0, -5.0]
    assert two["mean_base"]["recall@10"] == 0.045 and two["own_gains"]["ndcg@10"] == [0.0, 0.0]
    # a bucket where one run's base hit no target: no relative change from 0, for that run or the means
    zero = [[bucket(0.0), bucket(0.05)], [bucket(0.05), bucket(0.04)]]
    (cell,) = by_length(["a", "b"], zero)["iterations"][0]["buckets"]
    assert [g if g is None else round(g, 9) for g in cell["own_gains"]["recall@10"]] == [None, -20.0]
    assert cell["own_gain_ci95"]["recall@10"] is None and round(cell["gain_of_means"]["recall@10"], 9) == 80.0
    assert "| 1-5 | 7 | 0.0250 -> 0.0450 | +80.0% | - | +0.0% | +0.0% [+0.0, +0.0] |" in by_length_md(
        by_length(["a", "b"], zero), [5])
    capsys.readouterr()
    for args, message in [(["--base-iteration", "3"], f"--base-iteration 3: {a} has iterations 0-2 only"),
                          (["--base-iteration", "1", "--against", f"{a},{b}"], "--base-iteration: not with --against")]:
        assert main(["compare", str(a), str(b), *args, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "x.md").exists()
