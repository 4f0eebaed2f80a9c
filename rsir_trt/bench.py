"""Generation latency and throughput per runtime, beside a lower bound.

Step benchmark: warm-up, then repeated timed decode steps at batch B with the cache
half full (p50/p90/p99/mean). Bound: the bare `h @ E^T` plus a top-k of the same shape,
timed in the same run on the same device; every step time is also given as a multiple
of it. Generation benchmark: a whole `generate` run (sequences/s, items/s) on the same
seeds for every runtime."""
from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .data.dataset import SequenceData
from .engine_meta import EngineMeta
from .generate import GenConfig, Plan, generate
from .runtime.base import remaining_seed_items
from .system import configure_cpu, machine
from .wide_matmul import all_item_scores

RUNTIMES = ("reference", "torch", "onnxruntime", "tensorrt")


def percentiles(times: list[float]) -> dict:
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def _timed(fn, steps: int, warmup: int, cuda: bool = False) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def bound_times(B: int, V: int, d: int, device: str, steps: int, warmup: int, k: int = 10) -> list[float]:
    """The bare scoring work, `h @ E^T` + top-k, the faster of one matmul and column blocks
    (rsir_trt.wide_matmul; blocks win on CPU from B ~ 256), so the bound stays a bound."""
    h, E = torch.randn(B, d, device=device), torch.randn(V, d, device=device)
    with torch.inference_mode():
        runs = [_timed(lambda: scores(h, E).topk(k, dim=1), steps, warmup, device == "cuda")
                for scores in (lambda h, E: h @ E.T, all_item_scores)]
    return min(runs, key=lambda t: float(np.median(t)))


def step_inputs(B: int, S: int, V: int, rng):
    half = S // 2
    traj = np.zeros((B, S), dtype=np.int64)
    traj[:, :half] = rng.integers(1, V, size=(B, half))
    seeds = np.zeros((B, S), dtype=np.int64)
    seeds[:, :10] = rng.integers(1, V, size=(B, 10))
    return traj[:, half - 1].copy(), np.full(B, half - 1, dtype=np.int64), seeds, traj


def engine_step_inputs(B: int, S: int, V: int, rng):
    """step_inputs as an engine takes them: one head row per state row, the remaining seed items, and tau = 10."""
    item, pos, seeds, traj = step_inputs(B, S, V, rng)
    return item, pos, traj, np.arange(B), remaining_seed_items(seeds, traj), np.full(B, 10, dtype=np.int64)


def reference_step_fn(rt, B: int, S: int, V: int, rng):
    """One step of the authors' algorithm: recompute [B, S_max] (S/2 real), then rank test + choice per row."""
    from .runtime.reference import ReferenceRuntime
    item, pos, seeds, traj = step_inputs(B, S, V, rng)
    L = S // 2
    x = torch.from_numpy(traj)  # the authors' code pads every trajectory to S_max
    plan = Plan(seed_mat=seeds, seed_user=np.arange(B), seed_of=np.arange(B), prefix=np.ones(B, np.int64),
                u_pool=rng.random((B, S + 1), dtype=np.float32), u_sample=None)
    cfg = GenConfig(tau=V, max_len=S)
    seed_lists = [[int(i) for i in s if i] for s in seeds]
    E = rt.model.item_weight

    @torch.inference_mode()
    def step():
        logits = rt.model.encode(x)[:, L - 1] @ E.T
        for row in range(B):
            ReferenceRuntime._step(row, traj[row, :L].tolist(), seed_lists[row], logits[row], plan, cfg)
    return step


def make_runtimes(model, names: list[str], workdir: Path, device: str, threads: int) -> dict:
    """Build each requested runtime from one model; unavailable ones map to a reason string."""
    from .checkpoint import weights_hash
    meta = EngineMeta(backend="torch", model=model.config.to_dict(), weights_hash=weights_hash(model.state_dict()),
                      item_tokens=[str(i) for i in range(model.config.num_items)])
    out: dict = {}
    for name in names:
        try:
            if name == "reference":
                from .runtime.reference import ReferenceRuntime
                out[name] = ReferenceRuntime(model, meta)
            elif name == "torch":
                from .runtime.torch_rt import TorchRuntime
                out[name] = TorchRuntime(model, meta, device=device)
            elif name == "onnxruntime":
                from .export import export_onnx
                from .runtime.onnxruntime_rt import OnnxRuntime
                m = EngineMeta(**{**meta.to_dict(), "backend": "onnxruntime"})
                export_onnx(model, workdir / "bench.onnx", m)
                out[name] = OnnxRuntime(workdir / "bench.onnx", provider="cuda" if device == "cuda" else "cpu",
                                        threads=threads)
            elif name == "tensorrt":
                from .build import tensorrt_usable
                if not tensorrt_usable():
                    out[name] = "TensorRT or a CUDA GPU is absent"
                    continue
                from .export import export_onnx
                from .runtime.tensorrt_rt import TensorRTRuntime, build_plan
                m = EngineMeta(**{**meta.to_dict(), "backend": "tensorrt"})
                export_onnx(model, workdir / "bench.onnx", m)
                build_plan(workdir / "bench.onnx", workdir / "bench.plan", m)
                out[name] = TensorRTRuntime(workdir / "bench.plan")
            else:
                out[name] = f"unknown runtime {name!r}"
        except Exception as e:  # report why a runtime is missing, keep benchmarking the rest
            out[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    return out


def synthetic_seeds(n: int, V: int, rng, mean_len: int = 8) -> SequenceData:
    lens = np.clip(rng.poisson(mean_len, n), 3, 50) + 2
    seqs = [rng.choice(np.arange(1, V), size=k, replace=False) for k in lens]
    return SequenceData("random", [str(i) for i in range(n)], [str(i) for i in range(V)], seqs)


def run_bench(model, data: SequenceData | None, runtimes: list[str], batches: list[int], steps: int = 30,
              warmup: int = 5, gen_seeds: int = 512, gen_batch: int = 1024, gen: GenConfig | None = None,
              device: str = "cpu", seed: int = 0, gen_repeats: int = 1, progress=print) -> dict:
    threads = configure_cpu()
    model = model.eval()
    c = model.config
    V, S, d = c.num_items, c.max_len, c.dim
    rng = np.random.default_rng(seed)
    settings = {**machine(), "V": V, "S_max": S, "d": d, "layers": c.layers, "heads": c.heads, "model": c.kind,
                "dtype": "fp32", "device": device}   # machine() holds the threads
    with tempfile.TemporaryDirectory() as tmp:
        rts = make_runtimes(model, runtimes, Path(tmp), device, threads)
        settings["providers"] = {n: (r.describe() if not isinstance(r, str) else r) for n, r in rts.items()}
        step_rows = []
        for B in batches:
            bt = percentiles(bound_times(B, V, d, device, steps, warmup))
            step_rows.append({"runtime": "bound (matmul+topk)", "B": B, **bt, "x_bound": 1.0,
                              "items_per_s": B / bt["mean_ms"] * 1e3})
            for name, rt in rts.items():
                if isinstance(rt, str):
                    continue
                if name == "reference":
                    fn = reference_step_fn(rt, B, S, V, rng)
                    times = _timed(fn, max(3, steps // 5), 1, device == "cuda")
                else:
                    rt.allocate(B)
                    args = engine_step_inputs(B, S, V, rng)
                    times = _timed(lambda rt=rt, args=args: rt.step(*args), steps, warmup, False)
                p = percentiles(times)
                step_rows.append({"runtime": name, "B": B, **p, "x_bound": p["mean_ms"] / bt["mean_ms"],
                                  "items_per_s": B / p["mean_ms"] * 1e3,
                                  "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
                progress(f"step B={B} {name}: p50 {p['p50_ms']:.2f} ms ({p['mean_ms'] / bt['mean_ms']:.2f}x bound)")
        gen_rows = []
        if gen_seeds > 0:
            data = data or synthetic_seeds(gen_seeds, V, rng)
            if len(data.users) > gen_seeds:
                data = SequenceData(data.name, data.users[:gen_seeds], data.item_tokens, data.sequences[:gen_seeds])
            # random models fail every fidelity check: without `gen`, run without it
            gcfg = replace(gen or GenConfig(tau=V, max_len=S), batch_size=gen_batch)
            results = {}
            # engines run again when m > 1 with one row per trajectory (no sharing of a seed's
            # common prefix), and where they run several workers by default, as one: both gains measured here
            base = [(name, rt) for name, rt in rts.items() if not isinstance(rt, str)]
            runs = [(name, rt, True, gcfg.workers) for name, rt in base]
            engines = [(name, rt) for name, rt in base if name != "reference"]
            runs += [(f"{name}, one row per trajectory", rt, False, gcfg.workers) for name, rt in engines if gcfg.m > 1]
            runs += [(f"{name}, 1 worker", rt, True, 1) for name, rt in engines
                     if not gcfg.workers and rt.default_workers > 1]
            # one untimed whole generation per runtime and setting first (its time reported, its
            # output compared): the timed runs then measure the rate, not one-time costs (the
            # workers' sessions, first allocations and page faults, torch's first calls). The
            # repeats go round the runtimes in turn, so that each runtime's runs sample the same
            # stretch of this host, whose speed moves by 20-50% from minute to minute; rates are
            # of the median run (min and max beside it). The step timings warm up too.
            settings_of = [(name, rt, replace(gcfg, share_rows=share, workers=workers))
                           for name, rt, share, workers in runs]
            timed = {name: [generate(rt, data, cfg)] for name, rt, cfg in settings_of}   # [0]: untimed
            for _ in range(gen_repeats):
                for name, rt, cfg in settings_of:
                    timed[name].append(generate(rt, data, cfg))
                    progress(f"generate {name}: {timed[name][-1].stats['seconds']:.2f} s")
            for name, _, _ in settings_of:
                outputs = [[s.tobytes() for s in r.synthetic.sequences] for r in timed[name]]
                results[name] = outputs[0]
                seconds = sorted(r.stats["seconds"] for r in timed[name][1:])
                median = float(np.median(seconds))
                r = timed[name][0]
                gen_rows.append({"runtime": name, "trajectories": r.stats["trajectories"], "seconds": median,
                                 "seconds_min": seconds[0], "seconds_max": seconds[-1], "repeats": gen_repeats,
                                 "untimed_first_seconds": r.stats["seconds"],
                                 "sequences_per_s": r.stats["trajectories"] / median,
                                 "items_per_s": r.stats["generated_items"] / median,
                                 "mean_len": r.stats["mean_len"], "engine_rows": r.stats.get("engine_rows"),
                                 "engine_head_rows": r.stats.get("engine_head_rows"),
                                 "workers": r.stats.get("workers", 1),
                                 "repeats_identical": all(o == outputs[0] for o in outputs)})
            ref = gen_rows[0]["sequences_per_s"] if gen_rows and gen_rows[0]["runtime"] == "reference" else None
            for row in gen_rows:
                row["x_reference"] = row["sequences_per_s"] / ref if ref else None
                row["same_output_as_first"] = results[row["runtime"]] == results[gen_rows[0]["runtime"]]
            settings["generation"] = {"seeds": len(data.users), "m": gcfg.m, "tau": gcfg.tau, "p": gcfg.p,
                                      "max_len": gcfg.max_len, "batch": gen_batch, "data": data.name,
                                      "warmup": "one whole generation", "repeats": gen_repeats}
    return {"settings": settings, "steps": step_rows, "generation": gen_rows}


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .atomic import atomic_path
    rows = result["steps"]
    names = list(dict.fromkeys(r["runtime"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in names:
        rs = [r for r in rows if r["runtime"] == name]
        Bs = [r["B"] for r in rs]
        style = "--" if name.startswith("bound") else "-"
        axes[0].plot(Bs, [r["p50_ms"] for r in rs], style, marker="o", label=name)
        axes[1].plot(Bs, [r["items_per_s"] for r in rs], style, marker="o", label=name)
    for ax, label in zip(axes, ("step latency p50 (ms)", "throughput (items/s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend()
    s = result["settings"]
    fig.suptitle(f"{s['model']} V={s['V']} d={s['d']} L={s['layers']} S_max={s['S_max']} {s['device']} "
                 f"{s['threads']} threads")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
