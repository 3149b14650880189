import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from grw_edge.loss import GrwSmoothingLoss, permutation_index


def brute_force_loss(Z: torch.Tensor, alpha: float) -> float:
    """The paper's definition, written out with explicit loops over orderings."""
    B, T, _ = Z.shape
    total = 0.0
    for b in range(B):
        logits = []
        for tail in itertools.permutations(range(1, T)):
            seq = Z[b, [0, *tail]].double()
            acceleration = seq[2:] - 2 * seq[1:-1] + seq[:-2]
            logits.append(-0.5 * float((acceleration ** 2).sum()))
        logits_t = torch.tensor(logits, dtype=torch.float64)
        total += float(torch.logsumexp(logits_t, 0) - logits_t[0])
        velocity = Z[b, 1:].double() - Z[b, :-1].double()
        total += alpha * 0.5 * float((velocity ** 2).sum())
    return total / B


@pytest.mark.parametrize("T", [3, 4, 5, 6, 7])
def test_all_orderings_with_first_frame_fixed(T):
    index = permutation_index(T).reshape(-1, T)
    assert index.shape[0] == math.factorial(T - 1)
    assert index[0].tolist() == list(range(T))
    assert (index[:, 0] == 0).all()
    assert len({tuple(row) for row in index.tolist()}) == index.shape[0]


def test_sampled_orderings_beyond_seven_frames_are_seeded():
    first = permutation_index(9, max_perms=50, generator=torch.Generator().manual_seed(3))
    again = permutation_index(9, max_perms=50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    rows = first.reshape(50, 9)
    assert rows[0].tolist() == list(range(9))
    assert (rows[:, 0] == 0).all()
    assert all(sorted(row) == list(range(9)) for row in rows.tolist())
    assert GrwSmoothingLoss(9, max_perms=50, seed=3).num_perms == 50


def test_hand_computed_case():
    # Z = (0, 1, 3): identity has acceleration 1, the swapped order (0, 3, 1) has -5.
    Z = torch.tensor([[[0.0], [1.0], [3.0]]])
    nll = F.cross_entropy(torch.tensor([[-0.5, -12.5]]), torch.tensor([0]))
    velocity = 0.5 * (1 + 4)
    assert GrwSmoothingLoss(3, alpha=0.5)(Z).item() == pytest.approx(nll.item() + 0.5 * velocity)
    assert GrwSmoothingLoss(3, alpha=1.0)(Z).item() == pytest.approx(nll.item() + velocity)


@pytest.mark.parametrize("T,alpha", [(3, 0.5), (4, 1.0), (5, 0.5), (6, 0.0)])
def test_matches_the_definition(T, alpha):
    Z = torch.randn(3, T, 7, generator=torch.Generator().manual_seed(T))
    assert GrwSmoothingLoss(T, alpha=alpha)(Z).item() == pytest.approx(
        brute_force_loss(Z, alpha), rel=1e-5)


def test_upstream_values():
    # Values printed by upstream GrwSmoothingLoss(T=5) for torch.manual_seed(s); randn(4, 5, 16).
    loss = GrwSmoothingLoss(5)
    for seed, upstream in [(0, 52.13463592529297), (1, 99.3160171508789)]:
        torch.manual_seed(seed)
        assert loss(torch.randn(4, 5, 16)).item() == pytest.approx(upstream, rel=1e-6)


def test_smooth_trajectories_cost_less_and_gradients_flow():
    t = torch.linspace(0, 1, 5)
    smooth = torch.stack([t, t ** 2], dim=-1)[None]
    rough = smooth[:, [0, 3, 1, 4, 2]]
    loss = GrwSmoothingLoss(5)
    assert loss(smooth) < loss(rough)
    Z = torch.randn(2, 5, 4, requires_grad=True)
    loss(Z).backward()
    assert Z.grad is not None and Z.grad.abs().sum() > 0


def test_clear_errors():
    with pytest.raises(ValueError, match="T >= 3"):
        GrwSmoothingLoss(2)
    loss = GrwSmoothingLoss(5)
    with pytest.raises(ValueError, match="built for T=5 but Z has T=4"):
        loss(torch.zeros(2, 4, 8))
    with pytest.raises(ValueError, match=r"\(B, T, K\)"):
        loss(torch.zeros(5, 8))
