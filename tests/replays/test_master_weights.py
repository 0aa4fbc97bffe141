"""The training optimizer: bf16 weights (a model on CUDA) are stepped through fp32 masters, so they learn as fp32 would."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the model extra)")

from replays.training.master_weights import MasterAdamW  # noqa: E402

LR = 1e-5  # the full fine-tune's default: an update far below a bf16 weight's spacing


def _weights() -> torch.Tensor:
    return torch.randn(256, 256, generator=torch.Generator().manual_seed(0)) * 0.02


def _grads(steps: int) -> list[torch.Tensor]:
    """A steady direction with noise, as a loss going down gives: the weights should travel, not wander."""
    gen = torch.Generator().manual_seed(1)
    direction = torch.randn(256, 256, generator=gen)
    return [direction + 0.5 * torch.randn(256, 256, generator=gen) for _ in range(steps)]


def _train(param: torch.nn.Parameter, optimizer: torch.optim.Optimizer | MasterAdamW, grads: list[torch.Tensor]) -> None:
    for grad in grads:
        param.grad = grad.to(param.dtype)
        optimizer.step()
        optimizer.zero_grad()


def test_bf16_weights_follow_an_fp32_run_instead_of_rounding_the_updates_away() -> None:
    grads = [g.bfloat16().float() for g in _grads(40)]  # the gradients a bf16 model computes, for all three runs
    reference = torch.nn.Parameter(_weights().bfloat16().float())  # from the weights the bf16 model loaded
    _train(reference, torch.optim.AdamW([reference], lr=LR, weight_decay=0.0), grads)
    plain = torch.nn.Parameter(_weights().bfloat16())
    _train(plain, torch.optim.AdamW([plain], lr=LR, weight_decay=0.0), grads)
    mastered = torch.nn.Parameter(_weights().bfloat16())
    optimizer = MasterAdamW([mastered], lr=LR)
    _train(mastered, optimizer, grads)

    assert mastered.dtype == torch.bfloat16 and optimizer.copies == 1
    # The master is the fp32 run, exactly; the bf16 weights the forward uses are it, rounded.
    assert torch.equal(optimizer.masters[0], reference.detach())
    assert torch.equal(mastered.detach(), reference.detach().bfloat16())
    # What this guards against: plain AdamW on bf16 weights rounds most updates away and drifts from the fp32 run.
    start = _weights().bfloat16()
    moved = {name: (p.detach() != start).float().mean().item() for name, p in (("plain", plain), ("mastered", mastered))}
    assert moved["plain"] < 0.5 < moved["mastered"], moved
    drift = (plain.detach().float() - reference.detach()).abs().mean().item()
    assert drift > 5 * (mastered.detach().float() - reference.detach()).abs().mean().item()


def test_fp32_weights_are_stepped_in_place_exactly_as_adamw_does() -> None:
    grads = _grads(3)
    reference = torch.nn.Parameter(_weights())
    _train(reference, torch.optim.AdamW([reference], lr=1e-3, weight_decay=0.0), grads)
    param = torch.nn.Parameter(_weights())
    optimizer = MasterAdamW([param], lr=1e-3)
    _train(param, optimizer, grads)
    assert optimizer.copies == 0 and optimizer.masters[0] is param
    assert torch.equal(param.detach(), reference.detach())


def test_clipping_measures_the_fp32_gradients_and_the_step_uses_the_clipped_ones() -> None:
    low = torch.nn.Parameter(torch.zeros(4, dtype=torch.bfloat16))
    high = torch.nn.Parameter(torch.zeros(3))
    optimizer = MasterAdamW([low, high], lr=0.1)
    optimizer.param_groups[0]["lr"] = 0.5  # the schedule sets it this way
    low.grad = torch.full((4,), 3.0, dtype=torch.bfloat16)
    high.grad = torch.full((3,), 4.0)
    norm = optimizer.clip_grad_norm(1.0)
    assert norm == pytest.approx((4 * 9 + 3 * 16) ** 0.5)
    assert low.grad is None  # moved to its master, not left behind as a second copy
    optimizer.step()
    # AdamW's first step moves every weight by -lr * sign(grad), whatever the scale: the gradient got there.
    assert torch.allclose(low.detach().float(), torch.full((4,), -0.5))
    assert torch.allclose(high.detach(), torch.full((3,), -0.5))
    optimizer.zero_grad()
    assert all(m.grad is None for m in optimizer.masters) and low.grad is None and high.grad is None


def test_a_parameter_without_a_gradient_is_left_as_it_is() -> None:
    used = torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))
    unused = torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))
    optimizer = MasterAdamW([used, unused], lr=0.25)
    used.grad = torch.ones(2, dtype=torch.bfloat16)
    optimizer.step()
    assert torch.equal(unused.detach(), torch.ones(2, dtype=torch.bfloat16))
    assert torch.allclose(used.detach().float(), torch.full((2,), 0.75))
