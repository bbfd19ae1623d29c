"""Flow parts of BGAD (osad_lib.components.flows): positional code, invertibility, log-determinant."""

import math

import numpy as np
import pytest
import torch

from osad_lib.components.flows import (
    conditional_flow, coupling_subnet, gaussian_log_likelihood, positional_encoding_2d,
)
from osad_lib.seeding import seed_everything


def test_positional_encoding_values_by_hand():
    code = positional_encoding_2d(8, 2, 3)  # half = 4 → frequencies 1 and 1e4^(-1/2) = 0.01
    assert code.shape == (8, 2, 3)
    assert code[0, 1, 2].item() == pytest.approx(math.sin(2.0), abs=1e-6)     # column 2, f = 1
    assert code[1, 0, 2].item() == pytest.approx(math.cos(2.0), abs=1e-6)
    assert code[2, 0, 2].item() == pytest.approx(math.sin(0.02), abs=1e-6)    # column 2, f = 0.01
    assert code[3, 1, 1].item() == pytest.approx(math.cos(0.01), abs=1e-6)
    assert code[4, 1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-6)     # row 1, f = 1
    assert code[5, 1, 2].item() == pytest.approx(math.cos(1.0), abs=1e-6)
    assert code[7, 1, 0].item() == pytest.approx(math.cos(0.01), abs=1e-6)    # row 1, f = 0.01
    assert code[5, 0, 0].item() == 1.0 and code[4, 0, 0].item() == 0.0


def test_positional_encoding_halves_encode_columns_then_rows():
    code = positional_encoding_2d(128, 5, 7)
    cols, rows = code[:64], code[64:]
    assert torch.equal(cols, cols[:, :1, :].expand_as(cols))   # first half: constant along rows
    assert torch.equal(rows, rows[:, :, :1].expand_as(rows))   # second half: constant along columns
    assert torch.allclose(code[0::2] ** 2 + code[1::2] ** 2, torch.ones(64, 5, 7), atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        positional_encoding_2d(6, 2, 2)


def test_coupling_subnet_shape():
    net = coupling_subnet(10, 6)
    assert [m.__class__.__name__ for m in net] == ["Linear", "ReLU", "Linear"]
    assert net[0].out_features == 20 and net(torch.zeros(3, 10)).shape == (3, 6)


def _randomised_flow(channels: int, cond_dim: int) -> torch.nn.Module:
    seed_everything(0)
    flow = conditional_flow(channels, cond_dim=cond_dim, n_blocks=3).double()
    with torch.no_grad():  # move away from the near-identity initialisation
        for p in flow.parameters():
            if p.requires_grad:
                p.add_(0.5 * torch.randn_like(p))
    return flow.eval()


def test_flow_is_invertible():
    flow = _randomised_flow(5, 4)
    x, cond = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 4, dtype=torch.float64)
    z, _ = flow(x, c=[cond])
    x_back, _ = flow(z, c=[cond], rev=True)
    assert not torch.allclose(z, x)
    assert torch.allclose(x_back, x, atol=1e-5)  # permutations are float32-orthogonal


@pytest.mark.parametrize("cond_dim", [0, 4])
def test_log_determinant_matches_autograd_jacobian(cond_dim):
    flow = _randomised_flow(5, cond_dim)
    x = torch.randn(1, 5, dtype=torch.float64)
    cond = [torch.randn(1, cond_dim, dtype=torch.float64)] if cond_dim else []
    _, log_jac_det = flow(x, c=cond)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v.view(1, 5), c=cond)[0][0], x[0])
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign.item() != 0
    assert log_jac_det.item() == pytest.approx(logabs.item(), abs=1e-5)


def test_gaussian_log_likelihood_by_hand():
    z = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    out = gaussian_log_likelihood(z, torch.tensor([0.0, 0.5]))
    assert out[0].item() == pytest.approx(-math.log(2 * math.pi), abs=1e-6)
    assert out[1].item() == pytest.approx(-math.log(2 * math.pi) - 2.5 + 0.5, abs=1e-6)


def test_flow_log_likelihood_is_a_density():
    """exp(log p) of a 2-D flow integrates to ≈ 1 over a grid that covers its mass."""
    flow = _randomised_flow(2, 0)
    grid = torch.linspace(-12, 12, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    with torch.no_grad():
        z, ljd = flow(pts)
        density = gaussian_log_likelihood(z, ljd).exp()
    step = float(grid[1] - grid[0])
    assert float(density.sum()) * step**2 == pytest.approx(1.0, abs=0.02)


def test_soft_permutations_are_seeded():
    seed_everything(3)
    a = conditional_flow(6, cond_dim=4, n_blocks=2)
    seed_everything(3)
    b = conditional_flow(6, cond_dim=4, n_blocks=2)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    w = a.state_dict()["module_list.0.w_perm"].view(6, 6).double()
    assert np.allclose((w @ w.T).numpy(), np.eye(6), atol=1e-6)
