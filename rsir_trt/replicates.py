"""One RSIR setting looped over several seeds (side by side), summarised per iteration.

RSIR's gain is a few percent here, about one seed's sd of the baseline, so one loop
measured against its own iteration 0 can mislead (README, Results): the mean over seeds,
its sd, each seed's own gain and the paired 95% interval of those gains say how much of
a gain is the method."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .atomic import make_dir
from .errors import RsirError
from .loop import read_config
from .report import CHANGE_KEYS, KEYS, SELECT_BY, collect, gain, selected
from .system import cpu_threads

VARY = ("seed", "iterations", "stop_early", "backend")  # may differ between replicates


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise RsirError(f"--seeds: {text!r} is not a comma-separated list of integers") from None
    if len(seeds) < 2 or len(set(seeds)) < len(seeds):
        raise RsirError(f"--seeds: give two or more different seeds, got {text!r}")
    return seeds


def run_seeds(args: list[str], seeds: list[int], root: Path, jobs: int, resume: bool,
              branch_from: Path | None = None, say=print) -> list[Path]:
    """One `rsir-trt loop` process per seed into root/seed-S (its log: root/seed-S.log),
    `jobs` at a time with the cores split between them (RSIR_THREADS): each run is
    exactly the standalone `RSIR_THREADS=t rsir-trt loop ARGS --seed S --out root/seed-S`.
    Killed, the runs resume with --resume like any loop. `branch_from` is a root of the
    same kind: seed S branches from its seed-S run."""
    threads = max(1, cpu_threads() // jobs)
    make_dir(root, f"--out {root}")
    env = dict(os.environ, RSIR_THREADS=str(threads))
    todo, running, failed = list(seeds), {}, []
    try:
        while todo or running:
            while todo and len(running) < jobs:
                seed = todo.pop(0)
                run, log = root / f"seed-{seed}", root / f"seed-{seed}.log"
                cmd = [sys.executable, "-m", "rsir_trt", "loop", *args, "--seed", str(seed), "--out", str(run)]
                if resume and (run / "config.json").exists():
                    cmd.append("--resume")
                if branch_from is not None:
                    cmd += ["--branch-from", str(Path(branch_from) / f"seed-{seed}")]
                with open(log, "a") as f:
                    running[seed] = (subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env), time.time())
                say(f"seed {seed}: started, {threads} thread(s), log {log}")
            time.sleep(0.5)
            for seed, (proc, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[seed]
                minutes = f"{(time.time() - t0) / 60:.1f} min"
                if proc.returncode:
                    failed.append(f"seed {seed}: {last_line(root / f'seed-{seed}.log')}")
                    say(f"seed {seed}: failed after {minutes}")
                else:
                    say(f"seed {seed}: done in {minutes}")
    finally:  # Ctrl-C or an error here: stop the children (each resumable)
        for proc, _ in running.values():
            proc.terminate()
            proc.wait()
    if failed:
        raise RsirError("; ".join(failed) + f" (logs in {root})")
    return [root / f"seed-{seed}" for seed in seeds]


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].removeprefix("error: ") if lines else "no output"


def load_run(root: Path) -> dict:
    """A loop run's iterations so far, from each finished iteration's metrics (not the
    report, which is written when the loop ends): runs still going compare too."""
    root = Path(root)
    if not (root / "config.json").is_file():
        raise RsirError(f"{root / 'config.json'}: missing (not a loop run directory)")
    try:
        cfg = read_config(root / "config.json")   # defaults filled in: older runs compare too
        rows = collect(root, cfg.student)
        for r in rows:
            [float(r[split][k]) for split in ("valid", "test") for k in KEYS]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise RsirError(f"{root}: unreadable loop metrics ({type(e).__name__}: {e})") from None
    if not rows:
        raise RsirError(f"{root}: no iteration finished yet")
    return {"root": str(root), "config": cfg.comparable(), "rows": rows}


def setting(cfg: dict) -> dict:
    """The configuration, flattened one level ('gen.tau'), without what replicates may
    vary (seeds, length, backend)."""
    flat = {}
    for k, v in cfg.items():
        for kk, vv in (v.items() if isinstance(v, dict) else [(None, v)]):
            flat[f"{k}.{kk}" if kk else k] = vv
    return {k: v for k, v in flat.items() if k.split(".")[-1] not in VARY}


def differing_keys(a: dict, b: dict) -> list[str]:
    """The keys of two settings whose values differ, sorted."""
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# Student's t, 97.5% quantile, df 1..30 (tables); beyond, the Cornish-Fisher expansion
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def paired_interval(gains: list[float]) -> tuple[float, float]:
    """Mean of the runs' own gains and the half-width of its 95% t-interval: each seed is
    its own control, so this says whether the gain is more than seed noise."""
    mean = statistics.mean(gains)
    return mean, t975(len(gains) - 1) * statistics.stdev(gains) / len(gains) ** 0.5


def check_one_setting(runs: list[dict], who: str = "compare") -> None:
    """Two runs or more, whose settings differ in nothing but what replicates may vary."""
    if len(runs) < 2:
        raise RsirError(f"{who} needs at least two run directories (one setting, different seeds)")
    want = setting(runs[0]["config"])
    for run in runs[1:]:
        have = setting(run["config"])
        for key in differing_keys(want, have)[:1]:
            raise RsirError(f"{run['root']}: '{key}' is {have.get(key)!r}, {runs[0]['root']} has "
                            f"{want.get(key)!r}; compare runs of one setting")
    # a seed's second loop (a rerun, or the same seed on another host) is no independent
    # replicate: counted twice it would narrow the interval falsely
    first: dict = {}
    for run in runs:
        seed = run["config"]["seed"]
        if seed in first:
            raise RsirError(f"{run['root']}: seed {seed} again ({first[seed]} ran it); "
                            f"{who} counts each seed once")
        first[seed] = run["root"]


def common_iterations(runs: list[dict], base: int = 0) -> int:
    """How many iterations every run has; `base` (--base-iteration) must be one of them."""
    n = min(len(run["rows"]) for run in runs)
    if not 0 <= base < n:
        short = min(runs, key=lambda run: len(run["rows"]))
        raise RsirError(f"--base-iteration {base}: {short['root']} has iterations 0-{n - 1} only")
    return n


def summarise(runs: list[dict], base: int = 0) -> dict:
    """Per iteration: mean and sd over the runs, the gain of the means and each run's own
    gain, all over iteration `base` (0: the baseline; a later round asks whether more
    rounds add to it)."""
    check_one_setting(runs)
    n = common_iterations(runs, base)
    means = [{k: statistics.mean(run["rows"][i]["test"][k] for run in runs) for k in KEYS} for i in range(n)]
    iterations = []
    for i in range(n):
        own = [gain(run["rows"][i]["test"], run["rows"][base]["test"], "recall@10") for run in runs]
        iterations.append({
            "iteration": i, "mean": means[i],
            "sd": {k: statistics.stdev(run["rows"][i]["test"][k] for run in runs) for k in KEYS},
            "gain_of_means": {k: gain(means[i], means[base], k) for k in KEYS},
            "own_gains": own, "own_gain_ci95": list(paired_interval(own))})
    picks = [selected(run["rows"][:n]) for run in runs]
    return {"runs": [run["root"] for run in runs], "lengths": [len(run["rows"]) for run in runs],
            "base_iteration": base, "iterations": iterations, "selected": picks,
            "selected_gains": [gain(run["rows"][k]["test"], run["rows"][base]["test"], "recall@10")
                               for run, k in zip(runs, picks)]}


def markdown(summary: dict) -> str:
    runs = len(summary["runs"])
    head = f"{runs} runs: " + ", ".join(summary["runs"])
    if len(set(summary["lengths"])) > 1:
        head += f" (iterations 0-{len(summary['iterations']) - 1} only: not every run has more)"
    base = summary["base_iteration"]
    if base:
        head += f"\n\nEvery change (Δ) below is over iteration {base} (--base-iteration), not over iteration 0."
    lines = [head, "",
             "| iter | test R@10 mean ± sd | ΔR@10 of means | each run's own ΔR@10 | their mean [95% CI] "
             "| test N@10 mean ± sd | ΔN@10 of means |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for it in summary["iterations"]:
        m, s, g = it["mean"], it["sd"], it["gain_of_means"]
        own = ", ".join(f"{x:+.1f}%" for x in it["own_gains"])
        mid, half = it["own_gain_ci95"]
        ci = f"{mid:+.1f}% [{mid - half:+.1f}, {mid + half:+.1f}]" if it["iteration"] != base else "-"
        lines.append(f"| {it['iteration']} | {m['recall@10']:.4f} ± {s['recall@10']:.4f} | {g['recall@10']:+.1f}% | "
                     f"{own} | {ci} | {m['ndcg@10']:.4f} ± {s['ndcg@10']:.4f} | {g['ndcg@10']:+.1f}% |")
    gains = summary["selected_gains"]
    lines.append(f"\nSelected by validation {SELECT_BY} in each run: iterations "
                 f"{', '.join(map(str, summary['selected']))}; their own test ΔR@10 "
                 f"{', '.join(f'{x:+.1f}%' for x in gains)} (mean {statistics.mean(gains):+.1f}%).")
    return "\n".join(lines) + "\n"


def contrast(variant: list[dict], control: list[dict]) -> dict:
    """Two settings over the same seeds, seed by seed: per iteration, each seed's own gain
    under the variant minus its own gain under the control (points of %), their mean and
    paired 95% interval. Each seed is a block, so seed noise in iteration 0 cancels (and
    exactly when the variant was branched from the control: the same iteration 0).
    Where the variant trains otherwise (its own iteration 0), also each of its iterations'
    gain over the control's iteration 0: whether it beats the other setting's baseline."""
    for runs, who in ((variant, "compare"), (control, "--against")):
        check_one_setting(runs, who)
    v, c = ({r["config"]["seed"]: r for r in runs} for runs in (variant, control))
    if v.keys() != c.keys():   # each side has each seed once (check_one_setting)
        raise RsirError(f"--against: the two sides need the same seeds (runs: seeds {sorted(v)}, "
                        f"--against: {sorted(c)})")
    seeds = sorted(v)
    n = min(len(r["rows"]) for r in variant + control)
    iterations = []
    for i in range(1, n):
        diffs = {k: [gain(v[s]["rows"][i]["test"], v[s]["rows"][0]["test"], k)
                     - gain(c[s]["rows"][i]["test"], c[s]["rows"][0]["test"], k) for s in seeds] for k in CHANGE_KEYS}
        iterations.append({"iteration": i, "differences": diffs, "ci95": {k: list(paired_interval(d)) for k, d in diffs.items()}})
    over = []
    for i in range(n):
        gains = {k: [gain(v[s]["rows"][i]["test"], c[s]["rows"][0]["test"], k) for s in seeds] for k in CHANGE_KEYS}
        over.append({"iteration": i, "gains": gains, "ci95": {k: list(paired_interval(g)) for k, g in gains.items()}})
    want, have = setting(control[0]["config"]), setting(variant[0]["config"])
    return {"runs": [r["root"] for r in variant], "against": [r["root"] for r in control], "seeds": seeds,
            "differs_in": {k: have.get(k) for k in differing_keys(want, have)},
            "same_iteration0": all(v[s]["rows"][0]["test"] == c[s]["rows"][0]["test"] for s in seeds),
            "iterations": iterations, "over_control_iteration0": over}


def seed_rows(entries: list[dict], key: str, unit: str) -> list[str]:
    """Markdown rows: iteration, the per-seed R@10 values, then R@10's and N@10's mean [95% CI]."""
    def ci(m):
        return f"{m[0]:+.1f}{unit} [{m[0] - m[1]:+.1f}, {m[0] + m[1]:+.1f}]"
    return [f"| {it['iteration']} | {', '.join(f'{x:+.1f}{unit}' for x in it[key]['recall@10'])} | "
            f"{ci(it['ci95']['recall@10'])} | {ci(it['ci95']['ndcg@10'])} |" for it in entries]


def contrast_markdown(con: dict) -> str:
    differs = ", ".join(f"{k}={v}" for k, v in con["differs_in"].items()) or "nothing but the runs"
    lines = [f"Against {', '.join(con['against'])}, seed by seed (seeds {', '.join(map(str, con['seeds']))}); "
             f"these runs differ in {differs}; iteration 0 the same in every pair: "
             f"{'yes' if con['same_iteration0'] else 'no'}.", "",
             "| iter | own ΔR@10 minus the control's, per seed | mean [95% CI] | own ΔN@10 minus the control's, mean [95% CI] |",
             "|---:|---:|---:|---:|", *seed_rows(con["iterations"], "differences", ""),
             "\n(Points of %: a seed at +3.0% under the control and +4.5% under these runs is +1.5.)"]
    if not con["same_iteration0"]:   # else these are the runs' own gains, printed by `compare`
        lines += ["", "These runs' test metrics over the control's iteration 0, seed by seed:", "",
                  "| iter | ΔR@10 over the control's iteration 0, per seed | mean [95% CI] | ΔN@10, mean [95% CI] |",
                  "|---:|---:|---:|---:|", *seed_rows(con["over_control_iteration0"], "gains", "%")]
    return "\n".join(lines) + "\n"
