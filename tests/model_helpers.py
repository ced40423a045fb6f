"""Helpers shared by the model tests."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["randomise"]


def randomise(model: nn.Module, seed: int, spread: float = 0.2) -> nn.Module:
    """Fill every parameter and BN buffer with non-trivial values, in place.

    Random init zeroes the last BN of each block (zero_init_residual) and
    leaves BN statistics at 0/1, which would hide layout mistakes.

    Args:
        model: Any module (ours, MMPose's, a whole TopDown model).
        seed: Seed of the generator, so both sides of a comparison match.
        spread: Standard deviation of 1-d tensors (norm affine, biases, means)
            around their neutral value (1 for weights, 0 otherwise).

    Returns:
        ``model`` (not ``model.eval()``: MMPose's ``train()`` returns None).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.dim() == 1:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * spread
                             + (1.0 if name.endswith("weight") else 0.0))
            else:  # conv weights: fan-in scaling keeps activations O(1) through 50+ blocks
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * tensor[0].numel() ** -0.5)
    return model
