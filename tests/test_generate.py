import pytest

from rsir_trt.build import build_engine
from rsir_trt.data.dataset import SequenceData
from rsir_trt.errors import RsirError
from rsir_trt.generate import GenConfig, generate, make_plan
from rsir_trt.runtime import open_runtime


def subset(data, n):
    return SequenceData(data.name, data.users[:n], data.item_tokens, data.sequences[:n])


def run(path, backend, data, **cfg):
    rt = open_runtime(path, backend, topk=cfg.get("sample_topk", 0))
    return generate(rt, data, GenConfig(**cfg))


def as_bytes(result):
    return [s.tobytes() for s in result.synthetic.sequences]


@pytest.fixture(scope="module")
def engines(sasrec_ckpt, kang_ckpt, gru_ckpt, tmp_path_factory):
    d = tmp_path_factory.mktemp("engines")
    ckpts = {"sasrec": sasrec_ckpt, "sasrec-kang": kang_ckpt, "gru4rec": gru_ckpt}
    for kind, ckpt in ckpts.items():
        build_engine(ckpt, d / kind, "onnxruntime", topk=8)                 # sampling: the whole-row head
        build_engine(ckpt, d / f"{kind}-greedy", "onnxruntime")             # greedy: fast_head
    return {name: (ckpt, d / f"{name}.onnx") for kind, ckpt in ckpts.items() for name in (kind, f"{kind}-greedy")}


@pytest.mark.parametrize("kind", ["sasrec", "sasrec-kang", "gru4rec"])
@pytest.mark.parametrize("settings", [
    dict(),                                                    # paper defaults, greedy
    dict(sample_topk=8, temperature=0.7, start="prefix"),      # sampling from a random prefix
    dict(keep_failing=True, tau=3, p=0.3),
    dict(start="item"),                                        # from a random item of the seed
])
def test_all_runtimes_produce_the_same_dataset(kind, settings, engines, ml100k):
    ckpt, onnx = engines[kind if settings.get("sample_topk") else f"{kind}-greedy"]
    data = subset(ml100k, 120)
    cfg = dict(m=3, seed=7, batch_size=50, **settings)
    ref = run(ckpt, "reference", data, **cfg)
    assert ref.stats["kept"] >= 5     # something to compare (tau=3 keeps about ten of 360)
    assert as_bytes(run(onnx, "onnxruntime", data, **cfg)) == as_bytes(ref)
    assert as_bytes(run(ckpt, "torch", data, **cfg)) == as_bytes(ref)
    assert run(onnx, "onnxruntime", data, **cfg).stats["stop_reasons"] == ref.stats["stop_reasons"]


@pytest.mark.parametrize("tau", [10, 40])   # 40: fast_head hands many rows to its whole-row path
def test_beauty_subset_onnxruntime_equals_reference(tau, beauty_ckpts, beauty_small, tmp_path):
    build_engine(beauty_ckpts["sasrec"], tmp_path / "b", "onnxruntime")
    data = subset(beauty_small, 300)
    ref = run(beauty_ckpts["sasrec"], "reference", data, m=2, batch_size=128, tau=tau)
    got = run(tmp_path / "b.onnx", "onnxruntime", data, m=2, batch_size=128, tau=tau)
    assert ref.stats["kept"] >= 5
    assert as_bytes(got) == as_bytes(ref)


def test_deterministic_and_independent_of_batching(engines, ml100k):
    _, onnx = engines["sasrec-greedy"]
    a = run(onnx, "onnxruntime", ml100k, m=2, seed=3, batch_size=256)
    b = run(onnx, "onnxruntime", ml100k, m=2, seed=3, batch_size=37)
    c = run(onnx, "onnxruntime", ml100k, m=2, seed=4, batch_size=256)
    assert as_bytes(a) == as_bytes(b)
    assert as_bytes(a) != as_bytes(c)


@pytest.mark.parametrize("kind", ["sasrec-greedy", "gru4rec-greedy"])
def test_a_runtime_used_again_gives_what_a_fresh_one_gives(kind, engines, ml100k):
    # the cache buffers outlive a generation (allocate keeps them), so the next one's
    # slots start with the last one's rows in them
    _, onnx = engines[kind]
    rt = open_runtime(onnx, "onnxruntime")
    first = generate(rt, ml100k, GenConfig(m=2, seed=4, batch_size=256, workers=1))
    buffers = [id(c) for c in rt.cache]
    assert all(c.any() for c in rt.cache)
    again = generate(rt, ml100k, GenConfig(m=2, seed=3, batch_size=128, workers=1))
    assert [id(c) for c in rt.cache] == buffers
    assert as_bytes(again) == as_bytes(run(onnx, "onnxruntime", ml100k, m=2, seed=3, batch_size=128, workers=1))
    assert as_bytes(again) != as_bytes(first)


@pytest.mark.parametrize("settings", [dict(), dict(sample_topk=8, temperature=0.7, start="prefix")])
def test_independent_of_the_number_of_workers(settings, engines, ml100k):
    ckpt, onnx = engines["sasrec" if settings.get("sample_topk") else "sasrec-greedy"]
    cfg = dict(m=3, seed=5, batch_size=64, **settings)
    one = run(onnx, "onnxruntime", ml100k, workers=1, **cfg)
    assert one.stats["workers"] == 1 and one.stats["kept"] > 50
    for k in (2, 3):
        many = run(onnx, "onnxruntime", ml100k, workers=k, **cfg)
        assert many.stats["workers"] == k
        assert as_bytes(many) == as_bytes(one)
        assert many.synthetic.seed_user == one.synthetic.seed_user
        assert many.stats["stop_reasons"] == one.stats["stop_reasons"]
    tiny = subset(ml100k, 2)  # fewer trajectories than workers: as many shards as there are
    capped = run(onnx, "onnxruntime", tiny, m=1, workers=8)
    assert capped.stats["workers"] == 2
    assert as_bytes(capped) == as_bytes(run(onnx, "onnxruntime", tiny, m=1, workers=1))
    with pytest.raises(RsirError, match="--workers 2: the torch runtime runs one worker"):
        run(ckpt, "torch", ml100k, workers=2)


def test_admission_hands_out_whole_seeds_grouped_by_first_item(ml100k):
    from rsir_trt.prefix_rows import Admission
    data = subset(ml100k, 10)
    for i in (1, 4, 7):   # three seeds that start alike
        data.sequences[i] = data.sequences[i].copy()
        data.sequences[i][0] = data.sequences[0][0]
    plan = make_plan(data, GenConfig(m=3), 50)   # 30 trajectories, 3 per seed
    queue = Admission(plan, 50)
    order = queue.order.tolist()
    assert sorted(order) == list(range(30))
    seeds = plan.seed_of[queue.order]
    assert all(len(set(seeds[i:i + 3].tolist())) == 1 for i in range(0, 30, 3))   # each seed's three together
    firsts = plan.seed_mat[seeds, 0]
    assert (firsts[1:] >= firsts[:-1]).all()                                      # by first item
    same = [int(x) for x in dict.fromkeys(seeds[firsts == data.sequences[0][0]].tolist())]
    assert same == [0, 1, 4, 7]                                                   # in plan order among equals
    assert queue.take(7, busy=True).tolist() == order[:6]        # 7 would split the third seed: stop before it
    assert queue.take(2, busy=True).tolist() == []               # it waits while the worker is busy
    assert queue.take(2, busy=False).tolist() == order[6:8]      # an idle worker takes part of it
    assert queue.take(100, busy=True).tolist() == order[8:]
    assert queue.take(5, busy=False).tolist() == []
    assert len(set(queue.group[:3].tolist())) == 1 and len(set(queue.group[:6].tolist())) == 2
    flat = Admission(plan, 50, share=False)
    assert len(set(flat.group.tolist())) == 30 and flat.order.tolist() == list(range(30))


def test_seeds_that_start_alike_share_state_rows(engines, ml100k):
    """Head rows of different seeds in one state run the transformer and the logits once:
    fewer state rows than head rows, the same dataset as the reference's."""
    ckpt, onnx = engines["sasrec-greedy"]
    data = subset(ml100k, 60)
    for i in range(0, 60, 2):   # every other seed starts with seed 1's first item
        data.sequences[i] = data.sequences[i].copy()
        data.sequences[i][0] = data.sequences[1][0]
    cfg = dict(m=3, tau=ml100k.num_items, max_len=8, batch_size=400)   # no fidelity stop
    shared = run(onnx, "onnxruntime", data, **cfg)
    assert shared.stats["engine_rows"] <= shared.stats["engine_head_rows"] - 29   # at least the first step of 30 seeds
    assert as_bytes(shared) == as_bytes(run(ckpt, "reference", data, **cfg))
    assert as_bytes(shared) == as_bytes(run(ckpt, "torch", data, **cfg))
    alone = run(onnx, "onnxruntime", data, share_rows=False, **cfg)
    assert as_bytes(alone) == as_bytes(shared) and alone.stats["engine_rows"] == alone.stats["engine_head_rows"]


def test_a_seeds_trajectories_share_head_rows_until_they_diverge(engines, ml100k):
    ckpt, onnx = engines["sasrec"]
    data = subset(ml100k, 60)
    # p=1, greedy: a seed's m trajectories never diverge, so m=4 costs exactly what m=1 does
    one = run(onnx, "onnxruntime", data, m=1, p=1.0)
    four = run(onnx, "onnxruntime", data, m=4, p=1.0, batch_size=40)
    assert four.stats["engine_head_rows"] == one.stats["engine_head_rows"]   # state rows also depend on who is in flight
    assert as_bytes(four) == as_bytes(one) and four.stats["duplicates"] == 3 * one.stats["kept"]
    # p=0.5: members branch (rows are copied with their cache); whole seeds are admitted
    # together, so at least every seed's first step is shared
    cfg = dict(m=4, tau=ml100k.num_items, max_len=12)  # no fidelity stop: 11 steps per trajectory
    mixed = run(onnx, "onnxruntime", data, batch_size=10, **cfg)
    assert mixed.stats["engine_head_rows"] <= mixed.stats["trajectories"] * 11 - 3 * len(data.users)
    assert as_bytes(mixed) == as_bytes(run(onnx, "onnxruntime", data, batch_size=3, **cfg))  # B < m
    assert as_bytes(mixed) == as_bytes(run(ckpt, "reference", data, batch_size=10, **cfg))


def test_policy_invariants(engines, ml100k):
    _, onnx = engines["sasrec"]
    res = run(onnx, "onnxruntime", ml100k, m=2, max_len=20)
    train = ml100k.train_sequences()
    assert res.stats["kept"] > 0
    for seq, u in zip(res.synthetic.sequences, res.synthetic.seed_user):
        assert 3 <= len(seq) <= 20
        assert seq[0] == train[u][0]                   # starts at the seed's first item
        assert len(set(seq.tolist())) == len(seq)      # never repeats an item
        assert 0 not in seq
    keys = [s.tobytes() for s in res.synthetic.sequences]
    assert len(keys) == len(set(keys))                  # exact duplicates removed
    assert sum(res.stats["stop_reasons"].values()) == res.stats["trajectories"]


def test_item_start_begins_at_an_item_of_the_seed_with_the_seed_unchanged_as_a_set(engines, ml100k):
    _, onnx = engines["sasrec-greedy"]
    train = ml100k.train_sequences()
    plan = make_plan(ml100k, GenConfig(m=4, start="item", seed=3), 50)
    for t in range(plan.n):
        row = plan.seed_mat[plan.seed_of[t]]
        seed = train[plan.seed_user[plan.seed_of[t]]][-50:]
        assert sorted(row[row > 0].tolist()) == sorted(seed.tolist())   # a rotation of the seed
        assert row[0] in seed and plan.prefix[t] == 1
    res = run(onnx, "onnxruntime", ml100k, m=4, start="item", seed=3)
    firsts = [seq[0] == train[u][0] for seq, u in zip(res.synthetic.sequences, res.synthetic.seed_user)]
    assert all(seq[0] in train[u] for seq, u in zip(res.synthetic.sequences, res.synthetic.seed_user))
    assert 0 < sum(firsts) < len(firsts) / 2          # most start elsewhere than the first item


def test_exploit_only_stays_inside_the_seed(engines, ml100k):
    _, onnx = engines["sasrec"]
    res = run(onnx, "onnxruntime", ml100k, m=1, p=1.0)
    train = ml100k.train_sequences()
    for seq, u in zip(res.synthetic.sequences, res.synthetic.seed_user):
        assert set(seq.tolist()) <= set(train[u].tolist())


def test_no_fidelity_check_never_stops_on_fidelity(engines, ml100k):
    _, onnx = engines["sasrec"]
    res = run(onnx, "onnxruntime", ml100k, m=1, tau=ml100k.num_items)
    assert res.stats["stop_reasons"]["fidelity"] == 0


def test_keep_failing_keeps_exactly_one_more_item(engines, ml100k):
    _, onnx = engines["sasrec"]
    strict = run(onnx, "onnxruntime", ml100k, m=1, min_len=1)
    keep = run(onnx, "onnxruntime", ml100k, m=1, min_len=1, keep_failing=True)
    assert strict.stats["stop_reasons"] == keep.stats["stop_reasons"]
    diff = keep.stats["new_interactions"] - strict.stats["new_interactions"]
    assert 0 < diff <= keep.stats["stop_reasons"]["fidelity"]


def test_drop_known_drops_exactly_the_copies_of_training_rows(engines, ml100k):
    _, onnx = engines["sasrec-greedy"]
    data = subset(ml100k, 200)
    first = run(onnx, "onnxruntime", data, m=3, seed=7)
    again = SequenceData(data.name, data.users, data.item_tokens, data.sequences, first.synthetic)
    same = run(onnx, "onnxruntime", again, m=3, seed=7, drop_known=True)   # the same model and draws again
    assert same.stats["kept"] == 0 and same.stats["known_copies"] == first.stats["kept"] > 0
    plain = run(onnx, "onnxruntime", again, m=3, seed=8)
    dropped = run(onnx, "onnxruntime", again, m=3, seed=8, drop_known=True)
    prefixes = {s[:n].tobytes() for s in again.training_set() for n in range(3, len(s) + 1)}
    assert as_bytes(dropped) == [s for s in as_bytes(plain) if s not in prefixes]   # order kept, only copies gone
    assert dropped.stats["known_copies"] == plain.stats["kept"] - dropped.stats["kept"] > 0
    assert "known_copies" not in plain.stats


def test_seed_max_items_generates_from_the_short_seeds_alone(engines, ml100k):
    _, onnx = engines["sasrec-greedy"]
    data = subset(ml100k, 200)
    most = 40   # these users' training rows run 18..48 items (each keeps its last 50): 35 of 200 are at most 40
    short = [i for i, s in enumerate(data.train_sequences()) if len(s) <= most]
    assert 20 < len(short) < 180
    got = run(onnx, "onnxruntime", data, m=3, seed=7, seed_max_items=most)
    alone = SequenceData(data.name, [data.users[i] for i in short], data.item_tokens, [data.sequences[i] for i in short])
    assert as_bytes(got) == as_bytes(run(onnx, "onnxruntime", alone, m=3, seed=7))   # the same draws, seed by seed
    assert got.stats["kept"] > 0 and set(got.synthetic.seed_user) <= set(short)      # provenance: the original users
    assert as_bytes(run(onnx, "onnxruntime", data, m=3, seed=7, seed_max_items=10_000)) == as_bytes(run(onnx, "onnxruntime", data, m=3, seed=7))


def test_min_len_keeps_exactly_the_longer_sequences_of_the_same_draws(engines, ml100k):
    _, onnx = engines["sasrec-greedy"]
    data = subset(ml100k, 200)
    paper = run(onnx, "onnxruntime", data, m=3, seed=7)
    longer = run(onnx, "onnxruntime", data, m=3, seed=7, min_len=5)
    assert as_bytes(longer) == [s.tobytes() for s in paper.synthetic.sequences if len(s) >= 5]   # order kept
    assert 0 < longer.stats["kept"] < paper.stats["kept"]


def test_validation_and_test_targets_are_never_used(engines, ml100k):
    _, onnx = engines["sasrec"]
    a = run(onnx, "onnxruntime", ml100k, m=1)
    changed = [s.copy() for s in ml100k.sequences]
    for s in changed:
        s[-2:] = [1, 2]  # other validation/test targets
    data = SequenceData(ml100k.name, ml100k.users, ml100k.item_tokens, changed)
    assert as_bytes(run(onnx, "onnxruntime", data, m=1)) == as_bytes(a)


@pytest.mark.parametrize("field,value,message", [
    ("tau", 0, "--tau must be >= 1"), ("p", 1.5, r"--p must be in \[0, 1\]"), ("m", 0, "--m must be >= 1"),
    ("batch_size", 0, "--batch-size must be >= 1"), ("start", "middle", "--start"),
    ("seed_max_items", -1, "--seed-max-items must be >= 0"), ("min_len", 0, "--min-len 0 >= 1"),
    ("workers", -1, "--workers must be >= 0"),
])
def test_bad_generation_settings(field, value, message):
    with pytest.raises(RsirError, match=message):
        GenConfig(**{field: value}).check()


def test_sampling_needs_a_topk_engine(sasrec_ckpt, ml100k, tmp_path):
    build_engine(sasrec_ckpt, tmp_path / "g", "onnxruntime", topk=0)
    with pytest.raises(RsirError, match="--topk >= 5"):
        run(tmp_path / "g.onnx", "onnxruntime", ml100k, sample_topk=5)
