import pytest
import torch

from rsir_trt.models import ModelConfig, create_model
from rsir_trt.train import TrainConfig, next_item_loss


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
