import pytest
import torch

from rsir_trt.models import ModelConfig, create_model
import numpy as np

import rsir_trt.train as train_mod
from rsir_trt.errors import RsirError
from rsir_trt.evaluate import pad
from rsir_trt.train import TrainConfig, batches, halving, next_item_loss


@pytest.mark.parametrize("loss", ["sampled", "ce"])
def test_loss_gradients_are_bit_reproducible_on_two_threads(loss):
    # A small vocabulary makes every item repeat many times in a batch: indexing's
    # backward (atomic adds over threads) then gave different embedding gradients in
    # 20 of 20 repeats; training must not depend on thread timing.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        batch = torch.randint(1, 200, (128, 41), generator=torch.Generator().manual_seed(0))
        model = create_model(ModelConfig(num_items=200, dropout=0.0, attn_dropout=0.0), seed=0)
        grads = []
        for _ in range(5):
            model.zero_grad(set_to_none=True)
            next_item_loss(model, batch, TrainConfig(loss=loss), torch.Generator().manual_seed(1)).backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for other in grads[1:]:
            assert all(torch.equal(a, b) for a, b in zip(grads[0], other))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("batching", ["random", "length"])
def test_every_sequence_is_in_exactly_one_batch_and_the_order_follows_the_seed(batching):
    rng = np.random.default_rng(0)
    seqs = [np.arange(1, int(n) + 1) * 1000 + i for i, n in enumerate(rng.integers(2, 40, 1000))]

    def run(seed):
        out = []
        for batch in batches(seqs, 32, torch.Generator().manual_seed(seed), batching):
            out.append([int(row[row > 0][0]) % 1000 for row in batch])   # each row's sequence index
        return out

    first = run(0)
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert run(0) == first and run(1) != first
    # Each batch is padded to its own longest row.
    assert all(b.shape[1] == max(len(seqs[i]) for i in ids)
               for b, ids in zip(batches(seqs, 32, torch.Generator().manual_seed(0), batching), first))


def test_random_batches_mix_lengths_and_length_batches_group_them():
    seqs = [np.arange(1, n + 1) for n in np.random.default_rng(1).integers(2, 50, 3200)]

    def spread(batching):   # mean range of lengths inside a batch
        return np.mean([float(((b > 0).sum(1).max() - (b > 0).sum(1).min()))
                        for b in batches(seqs, 64, torch.Generator().manual_seed(0), batching)])

    assert spread("random") > 30 and spread("length") < 3


@pytest.mark.parametrize("kind,layout", [("sasrec", "recbole"), ("sasrec", "kang"), ("gru4rec", "recbole")])
@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_encoding_a_random_batch_in_length_groups_changes_nothing(kind, layout, loss, monkeypatch):
    # Without dropout, one call over the whole padded batch and the length groups give
    # the same loss and gradients (to float rounding): trailing padding is never seen.
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 300, int(n)) for n in rng.integers(2, 51, 100)]
    batch = next(batches(seqs, 100, torch.Generator().manual_seed(0)))
    results = []
    for parts in (1, train_mod.ENCODE_PARTS):
        monkeypatch.setattr(train_mod, "ENCODE_PARTS", parts)
        model = create_model(ModelConfig(kind=kind, num_items=300, dropout=0.0, attn_dropout=0.0, layout=layout), seed=0)
        value = next_item_loss(model, batch, TrainConfig(loss=loss), torch.Generator().manual_seed(1))
        value.backward()
        results.append((value.item(), [p.grad for p in model.parameters()]))
    assert train_mod.ENCODE_PARTS > 1
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(results[0][1], results[1][1]))


@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_row_weights_give_the_weighted_mean_of_each_rows_own_loss(loss):
    # Without dropout each row's positions are encoded on their own: the weighted loss of a
    # batch is its rows' summed position losses, weighted, over the weighted position count.
    rng = np.random.default_rng(3)
    seqs = [rng.integers(1, 300, n) for n in (7, 3, 12, 5)]
    model = create_model(ModelConfig(num_items=300, dropout=0.0, attn_dropout=0.0), seed=0)
    cfg = TrainConfig(loss=loss)
    w = torch.tensor([1.0, 0.5, 0.5, 2.0])

    def loss_of(rows, weights=None):   # the same negatives each call
        return next_item_loss(model, pad([seqs[i] for i in rows]), cfg, torch.Generator().manual_seed(1), weights).item()
    positions = torch.tensor([len(s) - 1 for s in seqs], dtype=torch.float64)
    own = torch.tensor([loss_of([i]) for i in range(4)], dtype=torch.float64)
    want = float((own * positions * w).sum() / (positions * w).sum())
    assert loss_of(range(4), w) == pytest.approx(want, rel=1e-5)
    assert loss_of(range(4), torch.ones(4)) == pytest.approx(loss_of(range(4)), rel=1e-6)
    assert abs(loss_of(range(4), w) - loss_of(range(4))) > 1e-3


def with_synthetic(data, n=32):
    """`data` plus its first users' training rows reversed, as synthetic rows."""
    from rsir_trt.data import SequenceData, Synthetic
    rows = [s[:-2][::-1].copy() for s in data.sequences[:n] if len(s) >= 5]
    return SequenceData(data.name, data.users, data.item_tokens, data.sequences,
                        Synthetic(rows, list(range(len(rows))), [0] * len(rows)))


def test_synthetic_weight_changes_training_only_where_there_are_synthetic_rows(ml100k):
    def weights(data, synthetic_weight):
        model = create_model(ModelConfig(kind="sasrec", num_items=ml100k.num_items), seed=0)
        train_mod.train(model, data, TrainConfig(epochs=1, loss="sampled", synthetic_weight=synthetic_weight))
        return list(model.state_dict().values())
    real = first_users(ml100k)
    assert all(torch.equal(a, b) for a, b in zip(weights(real, 1.0), weights(real, 0.5)))   # iteration 0: the same bits
    augmented = with_synthetic(real)
    assert len(augmented.synthetic) > 20
    assert not all(torch.equal(a, b) for a, b in zip(weights(augmented, 1.0), weights(augmented, 0.5)))
    rows = train_mod.synthetic_row_weights(augmented, len(augmented.training_set()), 0.5)
    assert rows.tolist() == [1.0] * len(real.sequences) + [0.5] * len(augmented.synthetic)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_a_synthetic_weight_must_be_positive_and_finite(bad):
    with pytest.raises(RsirError, match="--synthetic-weight must be > 0"):
        TrainConfig(synthetic_weight=bad).check()


def test_halving_groups_cover_the_batch():
    assert halving(128, 4) == [64, 32, 16, 16]
    assert halving(128, 1) == [128] and halving(1, 4) == [1] and halving(3, 4) == [2, 1]
    assert all(sum(halving(n, p)) == n and min(halving(n, p)) >= 1 for n in range(1, 200) for p in range(1, 7))


def test_a_killed_training_resumes_after_its_last_epoch_with_identical_results(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from rsir_trt import checkpoint

    def train_cli(out, *extra, kill_at=None):
        env = dict(os.environ, RSIR_THREADS="2")
        env.pop("RSIR_KILL_AT", None)
        if kill_at:
            env["RSIR_KILL_AT"] = kill_at
        args = ["train", "--loss", "sampled", "--epochs", "3", "--seed", "4", "--out", str(out), *extra]
        return subprocess.run([sys.executable, "-m", "rsir_trt", *args], env=env, capture_output=True, text=True)

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train_cli(whole).returncode == 0
    assert train_cli(cut, kill_at="train:epoch2").returncode == -9
    assert (cut / "train-state.pt").exists() and not (cut / "model.pt").exists()
    other = train_cli(cut, "--resume", "--lr", "0.001")
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "train-state.pt: a snapshot of a different training" in other.stderr + other.stdout
    resumed = train_cli(cut, "--resume", kill_at="train:epoch2")   # epoch 2 is not run again
    assert resumed.returncode == 0, resumed.stderr
    assert not (cut / "train-state.pt").exists()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, cut))
    for m in (a, b):
        m["valid"].pop("seconds")
    assert (a["valid"], a["test"], a["best_epoch"], a["epochs_run"]) == (b["valid"], b["test"], b["best_epoch"], b["epochs_run"])
    wa, wb = (checkpoint.load(d / "model.pt")["state_dict"] for d in (whole, cut))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    nothing = train_cli(tmp_path / "none", "--resume")
    assert nothing.returncode != 0 and "nothing to resume" in nothing.stderr + nothing.stdout
    assert not (tmp_path / "none").exists()   # nothing created either
    assert "Traceback" not in nothing.stderr


def scripted_validation(monkeypatch, scores):
    """Validation NDCG@20 follows `scores`, one per epoch, so stalls fall where the test wants
    them; the training itself is real."""
    it = iter(scores)
    monkeypatch.setattr(train_mod, "evaluate", lambda model, data, split: {"ndcg@20": next(it)})


def first_users(data, n=64):
    from rsir_trt.data import SequenceData
    return SequenceData(data.name, data.users[:n], data.item_tokens, data.sequences[:n])


@pytest.mark.parametrize("patience,scores,drops,lrs,best_epoch", [
    # a stall after epoch 3 drops the rate; the second stall, with no drop left, stops
    (1, [0.1, 0.2, 0.15, 0.25, 0.22, 0.3], 1, [1, 1, 1, 1 / 4, 1 / 4], 4),
    (1, [0.1, 0.2, 0.15, 0.25, 0.22, 0.3], 0, [1, 1, 1], 2),
    # the new rate gets its own `patience` epochs even when its first one is no best
    (2, [0.1, 0.2, 0.15, 0.18, 0.19, 0.17, 0.3], 1, [1, 1, 1, 1, 1 / 4, 1 / 4], 2),
    (1, [0.1, 0.05, 0.2, 0.1, 0.3, 0.2, 0.4], 2, [1, 1, 1 / 4, 1 / 4, 1 / 16, 1 / 16], 5),
])
def test_lr_drops_restart_from_the_best_weights_at_a_quarter_of_the_rate(ml100k, monkeypatch, patience, scores,
                                                                         drops, lrs, best_epoch):
    import copy
    scripted_validation(monkeypatch, scores)
    after_epoch, at_optimiser = {}, []
    adam = torch.optim.Adam

    def recording_adam(params, **kw):
        params = list(params)
        at_optimiser.append([p.detach().clone() for p in params])
        return adam(params, **kw)
    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    model = create_model(ModelConfig(kind="sasrec", num_items=ml100k.num_items), seed=0)
    result = train_mod.train(model, first_users(ml100k), TrainConfig(lr=1e-3, epochs=20, patience=patience, lr_drops=drops),
                             progress=lambda epoch, *a: after_epoch.update({epoch: copy.deepcopy(list(model.parameters()))}))
    assert [row["lr"] for row in result.history] == [1e-3 * f for f in lrs]
    assert result.best_epoch == best_epoch and result.valid["ndcg@20"] == max(scores[: len(lrs)])
    # each new rate starts from the weights of the best epoch so far
    starts = [e for e in range(2, len(lrs) + 1) if lrs[e - 1] != lrs[e - 2]]
    assert len(at_optimiser) == 1 + len(starts)
    for e, params in zip(starts, at_optimiser[1:]):
        best = max(range(1, e), key=lambda j: (scores[j - 1], -j))
        assert all(torch.equal(a, b) for a, b in zip(params, after_epoch[best]))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), after_epoch[best_epoch]))


def test_a_training_killed_at_a_stall_resumes_through_the_lr_drop_bit_identically(ml100k, monkeypatch, tmp_path):
    scores = [0.1, 0.2, 0.15, 0.25, 0.22]
    cfg = TrainConfig(lr=1e-3, epochs=20, patience=1, lr_drops=1, seed=3)
    data = first_users(ml100k)

    def fresh():
        return create_model(ModelConfig(kind="sasrec", num_items=ml100k.num_items), seed=0)

    scripted_validation(monkeypatch, scores)
    whole = fresh()
    expected = train_mod.train(whole, data, cfg)

    class Killed(Exception):
        pass

    def kill_at_stall(epoch, *args):
        if epoch == 3:   # its snapshot is written; the drop has not happened yet
            raise Killed
    snapshot = tmp_path / "state.pt"
    scripted_validation(monkeypatch, scores)
    with pytest.raises(Killed):
        train_mod.train(fresh(), data, cfg, progress=kill_at_stall, snapshot=snapshot)
    scripted_validation(monkeypatch, scores[3:])
    resumed = fresh()
    result = train_mod.train(resumed, data, cfg, snapshot=snapshot)

    def timeless(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert timeless(result.history) == timeless(expected.history)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


def test_a_snapshot_from_before_lr_drops_still_resumes(ml100k, tmp_path):
    data = first_users(ml100k)
    model = create_model(ModelConfig(kind="sasrec", num_items=ml100k.num_items), seed=0)
    snapshot = tmp_path / "state.pt"
    train_mod.train(model, data, TrainConfig(epochs=1, patience=5), snapshot=snapshot)
    state = torch.load(snapshot, weights_only=True)
    del state["config"]["lr_drops"]
    state["config"]["epochs"] = 2
    for row in state["history"]:
        del row["lr"]
    torch.save(state, snapshot)
    cfg = TrainConfig(epochs=2, patience=5)
    result = train_mod.train(model, data, cfg, snapshot=snapshot)
    assert [row["epoch"] for row in result.history] == [1, 2] and result.history[1]["lr"] == cfg.lr
