"""Engine parity: the exported graph on ONNX Runtime vs the same step module in PyTorch,
and cached stepping vs full recomputation."""
import json

import numpy as np
import pytest
import torch

from rsir_trt import checkpoint
from rsir_trt.build import build_engine
from rsir_trt.engine_meta import HEAD_OUTPUTS, SAMPLING_OUTPUTS, read_onnx_meta
from rsir_trt.errors import RsirError
from rsir_trt.runtime import open_runtime
from rsir_trt.runtime.base import remaining_seed_items
from rsir_trt.step import DecodeStep, rsir_head


def _export_with_logits(ckpt, tmp_path, topk=10):
    from rsir_trt.engine_meta import EngineMeta
    from rsir_trt.export import export_onnx
    model, payload = checkpoint.load_model(ckpt)
    meta = EngineMeta(backend="onnxruntime", model=payload["model"], weights_hash=payload["weights_hash"],
                      item_tokens=payload["item_tokens"], topk=topk, with_logits=True)
    path = tmp_path / f"debug-{topk}.onnx"
    export_onnx(model, path, meta)
    return model, path


TIE = 1e-5  # logits closer than this are a float-rounding tie: backends may order them differently


def _ambiguous(logits, seeds, traj):
    """Rows whose head outputs depend on a near-tie (|difference| < TIE)."""
    masked = logits.copy()
    np.put_along_axis(masked, traj, -np.inf, 1)
    seed_scores = np.take_along_axis(masked, seeds, 1)
    M = seed_scores.max(1, keepdims=True)
    near_m = (np.abs(logits[:, 1:] - M) < TIE).sum(1) > 1
    top2 = -np.sort(-masked, 1)[:, :2]
    near_best = top2[:, 0] - top2[:, 1] < TIE
    s2 = -np.sort(-seed_scores, 1)[:, :2]
    near_seed = np.isfinite(s2[:, 1]) & (s2[:, 0] - s2[:, 1] < TIE)
    return near_m | near_best | near_seed


def _check_parity(ckpt, tmp_path, batches, seed=0, topk=10):
    """topk=10: the sampling engine (whole-row head); topk=0: the greedy engine (fast_head)."""
    model, path = _export_with_logits(ckpt, tmp_path, topk)
    ort_rt = open_runtime(path, "onnxruntime")
    step = DecodeStep(model, topk=topk, with_logits=True)
    n_head = 6 if topk else 3
    V, S = model.config.num_items, model.config.max_len
    rng = np.random.default_rng(seed)
    n_ties = n_rows = n_pass = 0
    for B in batches:
        seqs = rng.integers(1, V, size=(B, S))
        seeds = np.zeros((B, S), dtype=np.int64)
        seeds[:, :10] = rng.integers(1, V, size=(B, 10))
        seeds[: B // 2, :5] = seqs[: B // 2, :5]   # half the rows have used seed items, and rows that pass
        tau = np.full(B, 10)
        tau[1::3] = 3
        with torch.no_grad():
            full_logits = model.encode(torch.from_numpy(seqs)) @ model.item_weight.T  # [B, S, V]
        for b in range(B // 2):   # the model's own picks (distinct, as a seed's items): rows that pass
            picks = [int(i) for i in full_logits[b, :10, 1:].argmax(-1) + 1 if int(i) not in seeds[b]]
            picks = list(dict.fromkeys(picks))
            seeds[b, 10:10 + len(picks)] = picks
        ort_rt.allocate(B)
        cache = [torch.zeros(s) for _, s in model.cache_shapes(B)]
        for t in range(S):
            item, pos = seqs[:, t].copy(), np.full(B, t, dtype=np.int64)
            traj = np.where(np.arange(S)[None] <= t, seqs, 0)
            rest = remaining_seed_items(seeds, traj)
            # head rows on shared state rows: every state twice, the second time with
            # another row's seed items; the same as each pair's own whole-row head
            hrow = np.r_[np.arange(B), rng.permutation(B)]
            pair_rest = remaining_seed_items(np.r_[seeds, seeds[::-1]], traj[hrow])
            pair_tau = np.r_[tau, tau[::-1]]
            before = [c.copy() for c in ort_rt.cache]
            got2 = ort_rt.run(item, pos, traj, hrow, pair_rest, pair_tau)
            for c, b in zip(ort_rt.cache, before):   # a recurrent state is replaced by a step: run from the same one
                c[...] = b
            got = ort_rt.run(item, pos, traj, np.arange(B), rest, tau)
            with torch.no_grad():
                ref = step(*(torch.from_numpy(a) for a in (item, pos, traj, np.arange(B), rest, tau)), *cache)
                paired = step(*(torch.from_numpy(a) for a in (item, pos, traj, hrow, pair_rest, pair_tau)),
                              *[c.clone() for c in cache])
            rows = ref[n_head + 1:]
            if model.cache_kind == "kv":
                for buf, row in zip(cache, rows):
                    buf[torch.arange(B), :, t] = row
            else:
                cache = list(rows)
            logits = ref[n_head].numpy()
            assert np.abs(got[n_head] - logits).max() < 1e-4, f"B={B} t={t}: logits differ"
            assert np.abs(logits - full_logits[:, t].numpy()).max() < 1e-4, f"B={B} t={t}: cache != full"
            tie = _ambiguous(logits, seeds, traj)
            n_ties += tie.sum()
            n_rows += B
            for i, name in enumerate(["fidelity", "best_seed_item", "best_item"]):
                assert np.array_equal(got[i][~tie], ref[i].numpy()[~tie]), f"B={B} t={t}: {name} differs"
            # the head against its definition over the whole row (rsir_head on the logits)
            want = rsir_head(torch.from_numpy(logits), torch.from_numpy(rest), torch.from_numpy(traj), tau=torch.from_numpy(tau))
            for i, name in enumerate(["fidelity", "best_seed_item", "best_item"]):
                assert np.array_equal(ref[i].numpy(), want[i].numpy()), f"B={B} t={t}: {name} is not rsir_head's"
            want2 = rsir_head(torch.from_numpy(logits[hrow]), torch.from_numpy(pair_rest), torch.from_numpy(traj[hrow]),
                              topk, tau=torch.from_numpy(pair_tau))
            tie2 = np.r_[tie, _ambiguous(logits[hrow[B:]], seeds[::-1], traj[hrow[B:]])]
            for i, name in enumerate(HEAD_OUTPUTS + (SAMPLING_OUTPUTS if topk else [])):
                assert np.array_equal(paired[i].numpy(), want2[i].numpy()), f"B={B} t={t}: paired {name}"
            for i, name in enumerate(HEAD_OUTPUTS):
                assert np.array_equal(got2[i][~tie2], want2[i].numpy()[~tie2]), f"B={B} t={t}: paired {name} (ort)"
            if topk:
                assert np.abs(got2[4] - want2[4].numpy()).max() < 1e-4  # top-k scores
            assert np.abs(paired[n_head].numpy() - logits).max() == 0   # logits stay per state row
            n_pass += int(((ref[0].numpy() >= 0) & (ref[0].numpy() < tau)).sum())
            if topk:
                assert np.abs(got[4] - ref[4].numpy()).max() < 1e-4  # top-k scores
    # briefly trained models on random inputs have crowded logits (15% near-ties on
    # Beauty after one epoch); the exact comparison must still cover most rows
    assert n_ties / n_rows < 0.25, f"{n_ties} of {n_rows} rows are near-ties"
    assert n_pass > n_rows // 20, f"only {n_pass} of {n_rows} rows pass the check: best_item barely tested"


@pytest.mark.parametrize("topk", [0, 10])
@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_onnxruntime_matches_torch_every_position(kind, topk, sasrec_ckpt, gru_ckpt, tmp_path):
    _check_parity({"sasrec": sasrec_ckpt, "gru4rec": gru_ckpt}[kind], tmp_path, batches=(1, 3, 64), topk=topk)


@pytest.mark.parametrize("topk", [0, 10])
@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_onnxruntime_matches_torch_on_beauty_vocabulary(kind, topk, beauty_ckpts, tmp_path):
    _check_parity(beauty_ckpts[kind], tmp_path, batches=(1, 512), topk=topk)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_debug_engine_with_logits_generates_like_a_plain_one(backend, sasrec_ckpt, ml100k, tmp_path):
    """The logits output sits between the head and the cache rows: runtimes must skip it."""
    from dataclasses import replace
    from rsir_trt.data.dataset import SequenceData
    from rsir_trt.generate import GenConfig, generate
    from rsir_trt.runtime.torch_rt import TorchRuntime
    data = SequenceData(ml100k.name, ml100k.users[:60], ml100k.item_tokens, ml100k.sequences[:60])
    plain = open_runtime(sasrec_ckpt, "torch", topk=10)
    if backend == "torch":
        debug = TorchRuntime(plain.step_module.model, replace(plain.meta, with_logits=True))
    else:
        debug = open_runtime(_export_with_logits(sasrec_ckpt, tmp_path)[1])
    assert debug.meta.with_logits and debug.n_head == plain.n_head + 1
    for cfg in (GenConfig(m=3, tau=50), GenConfig(m=3, tau=50, sample_topk=5, start="prefix")):
        a, b = generate(plain, data, cfg), generate(debug, data, cfg)
        assert a.stats["kept"] > 0
        assert [s.tobytes() for s in a.synthetic.sequences] == [s.tobytes() for s in b.synthetic.sequences]


def test_head_semantics_on_hand_made_logits():
    from rsir_trt.step import rsir_head
    #               pad   1    2    3    4    5    6
    logits = torch.tensor([[9.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    seeds = torch.tensor([[2, 4, 6, 0]])
    traj = torch.tensor([[2, 0, 0]])
    fid, best_seed, best = rsir_head(logits, seeds, traj)
    # remaining seed items: 4 (2.0), 6 (0.0); best is 4; real items above 2.0: 1, 2, 3
    assert fid.tolist() == [3] and best_seed.tolist() == [4]
    assert best.tolist() == [1]        # 2 is used, padding never counts
    fid, _, _ = rsir_head(logits, seeds, torch.tensor([[2, 4, 6]]))
    assert fid.tolist() == [-1]        # nothing left of the seed


def test_engine_metadata_and_checks(sasrec_ckpt, tmp_path, ml100k):
    s = build_engine(sasrec_ckpt, tmp_path / "e", "onnxruntime")
    meta = read_onnx_meta(tmp_path / "e.onnx")
    payload = checkpoint.load(sasrec_ckpt)
    assert meta.weights_hash == payload["weights_hash"] == s["weights_hash"]
    assert meta.num_items == ml100k.num_items and meta.max_len == 50
    assert {"torch", "onnx", "onnxruntime", "rsir_trt"} <= set(meta.versions)
    meta.check("e", item_tokens=ml100k.item_tokens, max_len=50, weights_hash=payload["weights_hash"])
    with pytest.raises(RsirError, match="vocabulary has 1682 items, the data has 1681"):
        meta.check("e", item_tokens=ml100k.item_tokens[:-1])
    with pytest.raises(RsirError, match="different item vocabulary"):
        meta.check("e", item_tokens=["<pad>"] + list(reversed(ml100k.item_tokens[1:])))
    with pytest.raises(RsirError, match="S_max is 50, request needs 60"):
        meta.check("e", max_len=60)
    with pytest.raises(RsirError, match="weights .* differ"):
        meta.check("e", weights_hash="0" * 16)
    with pytest.raises(RsirError, match="needs an engine built with --topk >= 5"):
        meta.check("e", topk=5)


def test_engine_file_errors(sasrec_ckpt, tmp_path):
    build_engine(sasrec_ckpt, tmp_path / "e", "onnxruntime")
    data = (tmp_path / "e.onnx").read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(RsirError, match="not a readable ONNX file|cannot load"):
        open_runtime(tmp_path / "trunc.onnx")
    import onnx
    proto = onnx.load(str(tmp_path / "e.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    with pytest.raises(RsirError, match="no rsir-trt metadata"):
        open_runtime(tmp_path / "foreign.onnx")
    proto.metadata_props.add(key="rsir_trt", value=json.dumps({**read_onnx_meta(tmp_path / "e.onnx").to_dict(),
                                                               "format": "rsir-trt/engine/1"}))
    onnx.save(proto, str(tmp_path / "old.onnx"))   # an engine of an older contract: rebuild, never misread
    with pytest.raises(RsirError, match="engine format rsir-trt/engine/1 is not .* rebuild it"):
        open_runtime(tmp_path / "old.onnx")
    with pytest.raises(RsirError, match="cannot run on the tensorrt backend"):
        open_runtime(tmp_path / "e.onnx", "tensorrt")
    with pytest.raises(RsirError, match="cannot run on the onnxruntime backend"):
        open_runtime(sasrec_ckpt, "onnxruntime")
    with pytest.raises(RsirError, match="no such file"):
        open_runtime(tmp_path / "missing.onnx")


def test_fidelity_statistic_equals_the_rank_definition():
    """pass iff some remaining seed item j has rank_j = 1 + #{v: logit_v > logit_j} <= tau."""
    from rsir_trt.step import rsir_head
    g = torch.Generator().manual_seed(0)
    B, V, S = 64, 300, 12
    logits = torch.randn(B, V, generator=g).round(decimals=1)   # many exact ties on purpose
    seeds = torch.randint(1, V, (B, S), generator=g)
    traj = torch.zeros(B, S, dtype=torch.long)
    traj[:, :4] = seeds[:, :4]                                   # some seed items already used
    fid, best_seed, best = rsir_head(logits, seeds, traj)
    for b in range(B):
        used = set(traj[b].tolist()) | {0}
        remaining = [j for j in seeds[b].tolist() if j not in used]
        ranks = [1 + int((logits[b, 1:] > logits[b, j]).sum()) for j in remaining]
        for tau in (1, 3, 10, 50):
            assert (fid[b].item() <= tau - 1) == (min(ranks) <= tau), (b, tau)
        scores = logits[b].clone()
        scores[list(used)] = float("-inf")
        assert scores[best[b]] == scores.max() and best[b].item() not in used
        assert best_seed[b].item() in remaining and logits[b, best_seed[b]] == max(logits[b, j] for j in remaining)


def test_blocked_argmax_and_pad_columns_change_nothing():
    """The engine pads the logits to a multiple of BLOCK with zero-weight columns and
    takes the argmax in two levels: every head output equals the unpadded one-level head."""
    from rsir_trt.step import BLOCK, first_argmax, rsir_head
    g = torch.Generator().manual_seed(1)
    B, V, S = 64, 300, 12
    logits = torch.randn(B, V, generator=g).round(decimals=1)    # exact ties across blocks
    logits[:8] -= 10.0                                           # rows whose seed items all score < 0
    seeds = torch.randint(1, V, (B, S), generator=g)
    traj = torch.zeros(B, S, dtype=torch.long)
    traj[:, :4] = seeds[:, :4]
    traj[-1] = torch.arange(1, S + 1)
    logits[10, [250, 50]] = 9.0                                  # a tie across blocks: 50 wins
    logits[11, [140, 130]] = 9.0                                 # a tie inside one: 130 wins
    n_pad = -V % BLOCK
    padded = torch.cat([logits, torch.zeros(B, n_pad)], dim=1)
    blocked = padded.clone()
    blocked[:, V:] = float("-inf")
    assert first_argmax(blocked).tolist() == blocked.argmax(dim=1).tolist()
    assert first_argmax(blocked)[10:12].tolist() == [50, 130]
    assert padded.shape[1] % BLOCK == 0 and n_pad > 0
    want = rsir_head(logits, seeds, traj, topk=5)
    got = rsir_head(padded, seeds, traj, topk=5, n_pad=n_pad)
    for w, o in zip(want[:3] + want[4:], got[:3] + got[4:]):    # all but the top-k ids
        assert torch.equal(w, o)
    ids = got[3]                        # ties may come in another order; never a pad column
    assert (ids < V).all() and torch.equal(padded.gather(1, ids), got[4])
    # where M < 0 the pads' 0.0 logits rank above it: read as real items they would count
    as_real = rsir_head(padded, seeds, traj)[0]
    assert (as_real[:8] - want[0][:8] == n_pad).all() and (want[0][:8] >= 0).all()


def test_gpu_providers_run_fp32_without_tf32():
    """ONNX Runtime's CUDA provider defaults to TF32 for fp32 MatMul (use_tf32=1), which
    would round the logits' inputs; the session turns it off. (No GPU here: the provider
    list the session is given is what is checked.)"""
    from rsir_trt.runtime.onnxruntime_rt import session_providers
    assert session_providers("cpu") == ["CPUExecutionProvider"]
    assert session_providers("cuda") == [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    assert session_providers("tensorrt") == ["TensorrtExecutionProvider", "CPUExecutionProvider"]


def test_fast_head_equals_the_whole_row_head():
    """fast_head reads a few vocabulary blocks per row; its outputs must equal rsir_head's
    on every row: exact ties (rounded logits), crowded logits, trajectories that hold the
    best items, seeds with every score below 0 (the pad columns' 0.0 logits above M),
    vocabularies of 3, 14 and 95 blocks, and taus that send rows to its whole-row path."""
    import rsir_trt.step as step
    from rsir_trt.step import BLOCK, GATHER_BLOCKS, fast_head
    redone = []
    whole_row = step.rsir_head

    def spy(logits, *args, **kw):
        redone.append(logits.shape[0])
        return whole_row(logits, *args, **kw)
    g = torch.Generator().manual_seed(0)
    for trial in range(12):
        V = [300, 1683, 12103][trial % 3]
        B, S = 96, 50
        n_pad = -V % BLOCK
        logits = torch.randn(B, V, generator=g)
        if trial % 4 == 0:
            logits = logits.round(decimals=1)                      # exact ties, across and inside blocks
        if trial % 4 == 1:
            logits = logits * 0.01                                 # crowded
        seeds = torch.randint(1, V, (B, S), generator=g) * (torch.arange(S) < torch.randint(2, S, (B, 1), generator=g))
        traj = torch.where(torch.arange(S) < torch.randint(1, S, (B, 1), generator=g), torch.randint(1, V, (B, S), generator=g), 0)
        traj[:, :3] = seeds[:, :3].clamp(min=1)
        traj[:20, :40] = logits.topk(40, dim=1).indices[:20]       # the best items are used
        traj[:20, 40:] = 0
        seeds[20:30, 5:] = logits.topk(S - 5, dim=1).indices[20:30]  # rows that pass the check
        logits[:6] -= 5.0                                          # every seed score below 0
        rest = torch.from_numpy(remaining_seed_items(seeds.numpy(), traj.numpy()))
        padded = torch.cat([logits, torch.zeros(B, n_pad)], 1)
        for t in (1, 3, 10, 14, 20, V):
            tau = torch.full((B,), t)
            tau[::7] = 2
            redone.clear()
            step.rsir_head = spy
            row = torch.randint(0, B, (B + 40,), generator=g)    # head rows over the state rows
            try:
                got = fast_head(padded, rest, traj, tau, n_pad)
                paired = fast_head(padded, rest[row], traj[row], tau[row], n_pad, row)
            finally:
                step.rsir_head = whole_row
            want = whole_row(padded, rest, traj, 0, n_pad, tau)
            for w, o, p, name in zip(want, got, paired, ["fidelity", "best_seed_item", "best_item"]):
                assert torch.equal(w, o), (trial, V, t, name)
                assert torch.equal(w[row], p), (trial, V, t, name, "row map")
            assert ((want[0] >= 0) & (want[0] < tau)).any()        # some rows pass: best_item is compared
            if t == V and V > (GATHER_BLOCKS + 1) * BLOCK:
                assert redone[0] > 0                               # the whole-row path ran, and agreed
    # the same semantics as before the tau cap: uncapped counts, capped at tau
    full = whole_row(padded, seeds, traj, 0, n_pad)
    assert torch.equal(torch.minimum(full[0], tau), want[0])


def test_remaining_seed_items():
    seeds = np.array([[5, 7, 5, 9, 0], [1, 2, 3, 0, 0]])
    traj = np.array([[5, 8, 0], [0, 0, 0]])
    assert remaining_seed_items(seeds, traj).tolist() == [[0, 7, 0, 9, 0], [1, 2, 3, 0, 0]]
