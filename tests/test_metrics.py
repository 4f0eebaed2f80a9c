import math

import numpy as np
import pytest
import torch

from rsir_trt.evaluate import target_ranks
from rsir_trt.user_ranks import metrics_from_ranks


def test_metrics_hand_computed():
    # ranks 0, 1, 4, 12, 30 (0-based) for five users
    m = metrics_from_ranks(np.array([0, 1, 4, 12, 30]))
    assert m["recall@5"] == pytest.approx(3 / 5)
    assert m["recall@10"] == pytest.approx(3 / 5)
    assert m["recall@20"] == pytest.approx(4 / 5)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert m["ndcg@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(14)) / 5)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 13 + 1 / 31) / 5)


def test_ranks_exclude_history_and_padding():
    # items 0..5; item 0 is padding and scores highest, which must not count
    scores = torch.tensor([[9.0, 1.0, 5.0, 4.0, 3.0, 2.0]])
    # target 4 (score 3): above it are 2 (5.0) and 3 (4.0); 2 is in the history -> rank 1
    r = target_ranks(scores, torch.tensor([4]), torch.tensor([[2, 0]]))
    assert r.tolist() == [1]
    owned = scores.clone()  # evaluation masks its own score buffer in place: same rank
    assert target_ranks(owned, torch.tensor([4]), torch.tensor([[2, 0]]), overwrite=True).tolist() == [1]
    assert owned[0, 2] == float("-inf") and scores[0, 2] == 5.0
    # without history: rank 2
    assert target_ranks(scores, torch.tensor([4]), torch.tensor([[0]])).tolist() == [2]


def test_target_in_history_is_not_excluded():
    scores = torch.tensor([[0.0, 1.0, 5.0, 4.0]])
    r = target_ranks(scores, torch.tensor([3]), torch.tensor([[3, 1]]))
    assert r.tolist() == [1]  # only item 2 is above; the repeated target keeps its score


def test_ties_count_against_the_target():
    # items 1 and 3 tie with target 2: both count; item 4 is below
    scores = torch.tensor([[0.0, 2.0, 2.0, 2.0, 1.0]])
    assert target_ranks(scores, torch.tensor([2]), torch.tensor([[0]])).tolist() == [2]
    # a history item tying with the target is still excluded
    assert target_ranks(scores, torch.tensor([2]), torch.tensor([[3, 0]])).tolist() == [1]


def test_constant_or_nan_scores_rank_last():
    # a collapsed or diverged model must not look perfect: every candidate counts
    constant = torch.zeros(2, 6)
    assert target_ranks(constant, torch.tensor([3, 5]), torch.tensor([[1], [0]])).tolist() == [3, 4]
    nan = torch.full((1, 6), float("nan"))
    assert target_ranks(nan, torch.tensor([3]), torch.tensor([[0]])).tolist() == [6]
    # a NaN competitor counts against a finite target
    partly = torch.tensor([[0.0, float("nan"), 5.0, 1.0]])
    assert target_ranks(partly, torch.tensor([3]), torch.tensor([[0]])).tolist() == [2]
    assert metrics_from_ranks(np.array([6]))["recall@5"] == 0.0


def test_metrics_by_history_length_hand_computed():
    from rsir_trt.user_groups import bucket_labels, metrics_by_group
    assert bucket_labels([1, 2, 5]) == ["1", "2", "3-5", "6+"]
    # five users: ranks 0, 3 in bucket 1-5; 12, 1 in 6-10; 9 in 11+
    rows = metrics_by_group(np.array([0, 3, 12, 9, 1]), np.array([2, 5, 6, 30, 7]), [5, 10, 40])
    assert [(r["history"], r["users"]) for r in rows] == [("1-5", 2), ("6-10", 2), ("11-40", 1), ("all", 5)]
    assert [r["recall@10"] for r in rows] == [1.0, 0.5, 1.0, 0.8]   # bucket 41+ is empty: left out
    assert rows[0]["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5)) / 2)
    assert rows[1]["ndcg@10"] == pytest.approx(1 / math.log2(3) / 2)
    assert rows[2]["ndcg@10"] == pytest.approx(1 / math.log2(11))


def test_popularity_ranks_count_real_training_items_only():
    """Training prefixes [3, 1], [4, 3, 3], [3]: item 3 has four interactions, 1 and 4 one each
    (a tie: the lower id first); 2 is only a validation or test target and 5 a test target
    and in a synthetic row: neither counts."""
    from rsir_trt.data import SequenceData
    from rsir_trt.data.dataset import Synthetic
    from rsir_trt.user_groups import POPULARITY, metrics_by_group, popularity_ranks
    seqs = [np.array(s) for s in ([3, 1, 2, 2], [4, 3, 3, 2, 1], [3, 2, 5])]
    data = SequenceData("hand", ["a", "b", "c"], ["<pad>", "i1", "i2", "i3", "i4", "i5"], seqs,
                        Synthetic([np.array([5, 5, 5, 5])], [0], [1]))
    ranks = popularity_ranks(data)
    assert ranks.tolist() == [6, 2, 4, 1, 3, 5]
    targets = data.eval_inputs("test")[1]                    # 2, 1, 5 -> popularity ranks 4, 2, 5
    rows = metrics_by_group(np.array([0, 15, 4]), ranks[targets], [2, 4], POPULARITY.key)
    assert [(r["target_rank"], r["users"], r["recall@5"]) for r in rows] == [("1-2", 1, 0.0), ("3-4", 1, 1.0),
                                                                              ("5+", 1, 1.0), ("all", 3, 2 / 3)]


def test_change_interval_over_users_hand_computed():
    from rsir_trt.user_ranks import change_interval, per_user
    same = np.array([0, 4, 20, 9])
    assert change_interval(same, same, "recall@10") == (0.0, 0.0)   # no change, no spread
    # two users: recall@10 1, 0 -> 1, 1; means 0.5 -> 1 (+100%); var(a) = 0.5, var(b) = cov = 0:
    # var of the ratio = (1 / 0.5**4 * 0.5) / 2 = 4, half-width 1.96 * 2 = 392 points
    assert change_interval(np.array([0, 0]), np.array([0, 20]), "recall@10") == pytest.approx((100.0, 392.0))
    assert per_user(np.array([0, 1, 12]), "ndcg@10") == pytest.approx([1, 1 / math.log2(3), 0])
    # against a paired bootstrap over 3,000 users (the delta method's large-sample claim)
    rng = np.random.default_rng(0)
    base = rng.geometric(0.05, 3000) - 1
    now = np.where(rng.random(3000) < 0.2, base // 2, base)
    gain, half = change_interval(now, base, "ndcg@10")
    a, b = per_user(base, "ndcg@10"), per_user(now, "ndcg@10")
    idx = rng.integers(0, 3000, (2000, 3000))
    boot = 100 * (b[idx].mean(1) / a[idx].mean(1) - 1)
    assert gain == pytest.approx(100 * (b.mean() / a.mean() - 1))
    assert half == pytest.approx((np.percentile(boot, 97.5) - np.percentile(boot, 2.5)) / 2, rel=0.1)


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04 cut short"])
def test_a_broken_ranks_file_is_one_error(content, tmp_path):
    from rsir_trt.errors import RsirError
    from rsir_trt.user_ranks import load, save
    good = tmp_path / "good.npz"
    save(good, np.array([3, 0]), [2, 7])
    assert [x.tolist() for x in load(good)] == [[3, 0], [2, 7]]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    with pytest.raises(RsirError, match="bad.npz: not a test-ranks file"):
        load(bad)
