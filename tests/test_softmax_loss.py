import torch
import torch.nn.functional as F

from rsir_trt.softmax_loss import full_softmax_ce


def test_fused_loss_and_gradients_match_cross_entropy():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(37, 8, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(50, 8, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(1, 50, (37,), generator=g)
    z = h @ W.T
    z[:, 0] = float("-inf")
    want = F.cross_entropy(z, t)
    want_h, want_W = torch.autograd.grad(want, (h, W))
    got = full_softmax_ce(h, W, t)
    got_h, got_W = torch.autograd.grad(got, (h, W))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_h, want_h)
    torch.testing.assert_close(got_W, want_W)
    assert got_W[0].abs().max() == 0  # padding gets no gradient


def test_fused_loss_by_hand():
    # one row, logits (pad, 0, ln 3): loss for target 1 = log(1 + 3) - 0
    h = torch.tensor([[1.0]], requires_grad=True)
    W = torch.tensor([[5.0], [0.0], [float(torch.log(torch.tensor(3.0)))]])
    loss = full_softmax_ce(h, W, torch.tensor([1]))
    assert abs(loss.item() - float(torch.log(torch.tensor(4.0)))) < 1e-6
    loss.backward()
    # d/dh = sum_i p_i W_i - W_t = 0.75 ln 3
    assert abs(h.grad.item() - 0.75 * float(torch.log(torch.tensor(3.0)))) < 1e-6


def test_blocked_scores_match_one_matmul(monkeypatch):
    import rsir_trt.wide_matmul as wide_matmul
    monkeypatch.setattr(wide_matmul, "BLOCK", 16)  # 50 items: blocks of 16, 16, 16 and 2
    g = torch.Generator().manual_seed(1)
    h, W = torch.randn(7, 8, generator=g), torch.randn(50, 8, generator=g)
    torch.testing.assert_close(wide_matmul.all_item_scores(h, W), h @ W.T, rtol=0, atol=1e-6)
    test_fused_loss_and_gradients_match_cross_entropy()  # the loss through blocked scores


def test_weighted_fused_loss_and_gradients_match_a_weighted_mean_of_cross_entropies():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(23, 8, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(40, 8, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(1, 40, (23,), generator=g)
    w = torch.where(torch.arange(23) < 10, 1.0, 0.25).double()
    z = h @ W.T
    z[:, 0] = float("-inf")
    want = (F.cross_entropy(z, t, reduction="none") * w).sum() / w.sum()
    want_h, want_W = torch.autograd.grad(want, (h, W))
    got = full_softmax_ce(h, W, t, w)
    got_h, got_W = torch.autograd.grad(got, (h, W))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_h, want_h)
    torch.testing.assert_close(got_W, want_W)
    assert not torch.allclose(got, full_softmax_ce(h, W, t))   # the weights matter
