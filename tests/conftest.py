"""Shared test helpers: deterministic seeds, randomised BatchNorm statistics, and the logit-parity comparison."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> Iterator[None]:
    """Seed every test; restore torch's thread count after it (bitwise-resume tests compare runs with equal threads)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BN non-trivial running stats and affine params, so parity checks exercise them, and every
    Linear layer random weights: a fresh classifier is zero, which would make outputs and backbone gradients zero."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            bound = 1.0 / module.in_features**0.5
            module.weight.data.copy_((torch.rand(module.weight.shape, generator=gen) * 2 - 1) * bound)
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


def max_logit_difference(reference: torch.nn.Module, ours: torch.nn.Module, size: int = 64) -> float:
    """Largest |logit| difference after loading the randomised `reference`'s weights into `ours` (layout detected from the keys)."""
    import effnet

    randomize_bn(reference)
    effnet.load_state_dict(ours, reference.state_dict())
    ours.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert expected.shape == actual.shape == (2, 1000)
    assert expected.std() > 1e-3  # a real signal, not all-zero logits
    return (expected - actual).abs().max().item()
