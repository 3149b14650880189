"""The GRW-smoothing loss (paper arXiv 2511.20928).

Consecutive embeddings are modelled as a Gaussian random walk.  For every ordering of
the T frames with the first frame fixed, the logit is -1/2 * the summed squared second
differences (the acceleration) of the reordered sequence; cross-entropy asks the true
order (ordering 0) to win.  A velocity prior alpha * 1/2 * sum of squared first
differences, averaged over the batch, is added.
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EXHAUSTIVE_MAX_T = 7  # up to this T all (T - 1)! orderings are used


def permutation_index(T: int, max_perms: int = 1000,
                      generator: torch.Generator | None = None) -> Tensor:
    """Orderings of T frames with frame 0 first, flattened to (P * T,); the identity is first.

    All (T - 1)! orderings for T <= 7 (in lexicographic order), otherwise the identity
    followed by ``max_perms - 1`` orderings drawn with ``generator``.
    """
    if T < 3:
        raise ValueError(f"the GRW loss needs T >= 3 frames per sub-sequence, got T={T}")
    if T <= EXHAUSTIVE_MAX_T:
        tails = itertools.permutations(range(1, T))
        rows = [torch.tensor((0, *tail)) for tail in tails]
    else:
        if max_perms < 1:
            raise ValueError(f"max_perms must be at least 1, got {max_perms}")
        rows = [torch.arange(T)]
        rows += [torch.cat((torch.zeros(1, dtype=torch.long),
                            torch.randperm(T - 1, generator=generator) + 1))
                 for _ in range(max_perms - 1)]
    return torch.stack(rows).flatten()


class GrwSmoothingLoss(nn.Module):
    """GRW-smoothing loss over embeddings Z of shape (B, T, K).

    Normalise Z first (affine-free batch norm for intermediate layers, an affine
    normalisation for final per-frame embeddings), as the paper does.  The loss runs on
    Z's device without being moved there: the ordering index is copied to each device
    once and kept.
    """

    def __init__(self, T: int, alpha: float = 0.5, max_perms: int = 1000,
                 seed: int | None = None) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        index = permutation_index(T, max_perms, generator)
        self.register_buffer("perm_index", index, persistent=False)
        self._index_by_device: dict[torch.device, Tensor] = {}
        self.T = T
        self.alpha = alpha
        self.num_perms = math.factorial(T - 1) if T <= EXHAUSTIVE_MAX_T else max_perms

    def forward(self, Z: Tensor) -> Tensor:
        if Z.dim() != 3:
            raise ValueError(f"the GRW loss expects Z of shape (B, T, K), got {tuple(Z.shape)}")
        B, T, K = Z.shape
        if T != self.T:
            raise ValueError(f"the GRW loss was built for T={self.T} but Z has T={T} "
                             f"(shape {tuple(Z.shape)})")
        reordered = Z.index_select(1, self._index_on(Z.device)).reshape(B, self.num_perms, T, K)
        acceleration = reordered.diff(n=2, dim=2)
        logits = -0.5 * acceleration.pow(2).sum(dim=(2, 3))
        target = torch.zeros(B, dtype=torch.long, device=Z.device)
        order_nll = F.cross_entropy(logits, target)
        velocity = 0.5 * Z.diff(n=1, dim=1).pow(2).sum(dim=(1, 2)).mean()
        return order_nll + self.alpha * velocity

    def _index_on(self, device: torch.device) -> Tensor:
        """The ordering index on ``device``: the buffer itself, or a copy made once."""
        if self.perm_index.device == device:
            return self.perm_index
        index = self._index_by_device.get(device)
        if index is None:
            index = self._index_by_device[device] = self.perm_index.to(device)
        return index

