"""models/layers.py: the periodic convolution both networks use gives torch's own circular
convolution's values and gradients, and loads its state dicts."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from models.layers import PatchDiscriminator, circular_pad, conv_layer


@pytest.mark.parametrize("shape, p", [((2, 3, 5, 6), 1), ((2, 3, 4, 5, 6), 1), ((1, 2, 7, 7, 7), 2), ((1, 1, 3, 3), 3)])
def test_circular_pad_matches_torch_values_and_gradients(shape, p):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, generator=g, requires_grad=True)
    ours = circular_pad(x, p)
    ref = F.pad(x, [p] * 2 * (x.ndim - 2), mode="circular")
    assert ours.shape == ref.shape
    assert torch.equal(ours, ref)
    up = torch.randn(ref.shape, dtype=torch.float64, generator=g)
    (g_ours,) = torch.autograd.grad(ours, x, up)
    (g_ref,) = torch.autograd.grad(ref, x, up)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-12)
    # periodic: every input voxel receives the upstream gradient of each of its copies, so the
    # total gradient equals the total upstream gradient
    assert g_ours.sum().item() == pytest.approx(up.sum().item(), rel=1e-12)


def test_circular_pad_rejects_padding_wider_than_the_grid():
    with pytest.raises(ValueError, match="circular padding 3 is larger than the spatial shape"):
        circular_pad(torch.zeros(1, 1, 2, 5), 3)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("stride", [1, 2])
def test_periodic_conv_equals_torch_circular_conv(dims, stride):
    torch.manual_seed(0)
    ref = (nn.Conv3d if dims == 3 else nn.Conv2d)(3, 4, 3, stride=stride, padding=1, padding_mode="circular").double()
    ours = conv_layer(dims, 3, 4, 3, stride=stride, padding=1, padding_mode="circular").double()
    ours.load_state_dict(ref.state_dict())  # same keys: checkpoints of either load into the other
    assert set(ours.state_dict()) == set(ref.state_dict())
    x = torch.randn((2, 3) + (6,) * dims, dtype=torch.float64, requires_grad=True)
    y_ours, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y_ours, y_ref)
    up = torch.randn_like(y_ref)
    grads_ours = torch.autograd.grad(y_ours, [x, ours.weight, ours.bias], up)
    grads_ref = torch.autograd.grad(y_ref, [x, ref.weight, ref.bias], up)
    for a, b in zip(grads_ours, grads_ref):
        torch.testing.assert_close(a, b)


def test_zero_padding_mode_is_torch_behaviour():
    torch.manual_seed(0)
    ours = conv_layer(3, 1, 2, 3, padding=1)  # default padding_mode "zeros"
    ref = nn.Conv3d(1, 2, 3, padding=1)
    ref.load_state_dict(ours.state_dict())
    x = torch.ones(1, 1, 4, 4, 4)
    torch.testing.assert_close(ours(x), ref(x))
    assert ours(x)[0, 0, 0, 0, 0] != ours(x)[0, 0, 2, 2, 2]  # the zero border shows


def test_conditional_patch_discriminator_judges_a_structure_with_its_code():
    """The projection term: the same structure scores differently under two codes, a code is
    required exactly when the critic is conditioned, and patch logits keep the PatchGAN shape."""
    torch.manual_seed(0)
    x = (torch.rand(2, 1, 16, 16, 16) > 0.5).float()
    plain = PatchDiscriminator(3, (4, 8))
    assert plain(x).shape == (2, 1, 4, 4, 4)
    cond = PatchDiscriminator(3, (4, 8), cond_dim=5)
    a, b = torch.randn(2, 5), torch.randn(2, 5)
    assert cond(x, a).shape == (2, 1, 4, 4, 4)
    assert not torch.allclose(cond(x, a), cond(x, b))
    with pytest.raises(ValueError, match="code"):
        cond(x)
    with pytest.raises(ValueError, match="code"):
        plain(x, a)
