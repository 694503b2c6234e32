import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_deconoising.core.loss import deconoising_loss, positivity_penalty
from napari_deconoising.core.masking import apply_blind_spots, blind_spot_mask
from napari_deconoising.core.network import DecoNoisingNet
from napari_deconoising.core.psf import gaussian_psf


@settings(max_examples=40, deadline=None)
@given(h=st.integers(5, 70), w=st.integers(5, 70), radius=st.integers(1, 2), seed=st.integers(0, 10_000),
       fraction=st.sampled_from([0.03125, 0.1, 0.2]))
def test_mask_never_copies_a_pixel_onto_itself_or_another_spot(h, w, radius, seed, fraction):
    g = torch.Generator().manual_seed(seed)
    spots, sources = blind_spot_mask((3, h, w), fraction, radius, generator=g)
    assert spots.shape == sources.shape
    assert (spots[:, 0] == sources[:, 0]).all()  # same patch
    offset = (sources[:, 1:] - spots[:, 1:]).abs()
    assert (offset.max(dim=1).values >= 1).all()  # never itself
    assert (offset <= radius).all()  # inside the neighbourhood
    assert (sources[:, 1:] >= 0).all() and (sources[:, 1] < h).all() and (sources[:, 2] < w).all()
    spot_set = {tuple(s) for s in spots.tolist()}
    assert len(spot_set) == len(spots)  # no duplicates
    assert not any(tuple(s) in spot_set for s in sources.tolist())  # a spot's value never leaks


def test_mask_hits_requested_fraction_and_covers_borders():
    g = torch.Generator().manual_seed(0)
    n, h, w = 200, 100, 100
    spots, _ = blind_spot_mask((n, h, w), 0.03125, 2, generator=g)
    frac = len(spots) / (n * h * w)
    assert abs(frac - 0.03125) / 0.03125 < 0.05
    # stratified: every row and column of the patch is used somewhere
    assert set(spots[:, 1].tolist()) == set(range(h))
    assert set(spots[:, 2].tolist()) == set(range(w))
    frac10 = len(blind_spot_mask((50, 64, 64), 0.1, 2, generator=g)[0]) / (50 * 64 * 64)
    assert abs(frac10 - 0.1) / 0.1 < 0.05


def test_apply_blind_spots_replaces_values_and_leaves_input_alone():
    x = torch.arange(2 * 32 * 32, dtype=torch.float32).reshape(2, 1, 32, 32)
    before = x.clone()
    masked, mask = apply_blind_spots(x, 0.05, 2, torch.Generator().manual_seed(1))
    assert torch.equal(x, before)
    assert mask.dtype == torch.bool and mask.shape == x.shape
    assert (masked[mask] != x[mask]).all()  # all values distinct, so every spot changed
    assert torch.equal(masked[~mask], x[~mask])


def test_mask_rejects_patches_smaller_than_neighbourhood():
    with pytest.raises(ValueError, match="too small"):
        blind_spot_mask((1, 4, 40), 0.03125, 2)


@pytest.mark.parametrize("psf", [None, gaussian_psf(1.5)])
def test_blind_spot_is_real(psf):
    """The loss does not depend on the true values of the masked pixels through the input."""
    torch.manual_seed(0)
    net = DecoNoisingNet(psf, depth=2, channels=4)
    x = torch.randn(2, 1, 32, 32, requires_grad=True)
    masked, mask = apply_blind_spots(x, 0.05, 2, torch.Generator().manual_seed(2))
    denoised, phantom = net(masked)
    loss, _, _ = deconoising_loss(denoised, phantom, x.detach(), mask, positivity=1.0)
    loss.backward()
    assert x.grad[mask].abs().max() == 0
    assert x.grad[~mask].abs().max() > 0  # the rest of the image does matter


def test_positivity_penalty():
    z = torch.rand(1, 1, 8, 8)
    assert positivity_penalty(z) == 0
    z[0, 0, 0, 0] = -2.0
    assert positivity_penalty(z) == pytest.approx(2.0 / 64)
    # zero level: in normalised units, intensity 0 sits at -mean/std
    z2 = torch.full((1, 1, 4, 4), -0.5)
    assert positivity_penalty(z2, zero_level=1.0) == 0
    assert positivity_penalty(z2, zero_level=0.2) == pytest.approx(0.3)


def test_loss_is_masked_mse_plus_weighted_positivity():
    target = torch.zeros(1, 1, 4, 4)
    den = torch.zeros(1, 1, 4, 4)
    den[0, 0, 1, 1] = 3.0  # error at a masked pixel
    den[0, 0, 2, 2] = 100.0  # error at an unmasked pixel: ignored
    mask = torch.zeros_like(target, dtype=torch.bool)
    mask[0, 0, 1, 1] = mask[0, 0, 0, 0] = True
    phantom = -torch.ones(1, 1, 4, 4)
    total, mse, pos = deconoising_loss(den, phantom, target, mask, positivity=0.5)
    assert mse == pytest.approx(4.5)
    assert pos == pytest.approx(1.0)
    assert total == pytest.approx(5.0)
    total0, _, pos0 = deconoising_loss(den, phantom, target, mask, positivity=0.0)
    assert total0 == pytest.approx(4.5) and pos0 == 0


# -- 3D ---------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(d=st.integers(5, 20), h=st.integers(5, 40), w=st.integers(5, 40), radius=st.integers(1, 2),
       seed=st.integers(0, 10_000), fraction=st.sampled_from([0.03125, 0.1, 0.2]))
def test_3d_mask_never_copies_a_voxel_onto_itself_or_another_spot(d, h, w, radius, seed, fraction):
    g = torch.Generator().manual_seed(seed)
    spots, sources = blind_spot_mask((2, d, h, w), fraction, radius, generator=g)
    assert spots.shape == sources.shape and spots.shape[1] == 4
    assert (spots[:, 0] == sources[:, 0]).all()
    offset = (sources[:, 1:] - spots[:, 1:]).abs()
    assert (offset.max(dim=1).values >= 1).all()  # never itself, also at the borders
    assert (offset <= radius).all()  # inside the (2r+1)^3 neighbourhood
    assert (sources[:, 1:] >= 0).all()
    assert (sources[:, 1:] < torch.tensor([d, h, w])).all()
    spot_set = {tuple(s) for s in spots.tolist()}
    assert len(spot_set) == len(spots)
    assert not any(tuple(s) in spot_set for s in sources.tolist())


def test_3d_mask_is_stratified_over_z_y_x_and_uses_z_neighbours():
    g = torch.Generator().manual_seed(0)
    n, d, h, w = 40, 16, 48, 48
    spots, sources = blind_spot_mask((n, d, h, w), 0.03125, 2, generator=g)
    # Integer box edges (floor(k * 3.17)) make the first boxes 3 wide, so thin patches get
    # a few percent more spots than asked (7% at 16 planes, 2.6% at 64).
    assert abs(len(spots) / (n * d * h * w) - 0.03125) / 0.03125 < 0.1
    big, _ = blind_spot_mask((4, 64, 64, 64), 0.03125, 2, generator=g)
    assert abs(len(big) / (4 * 64**3) - 0.03125) / 0.03125 < 0.05
    for ax, size in zip((1, 2, 3), (d, h, w)):
        assert set(spots[:, ax].tolist()) == set(range(size))  # every plane, row, column
    # even spread: the count per Z plane is close to uniform
    per_plane = torch.bincount(spots[:, 1], minlength=d).float()
    assert per_plane.std() / per_plane.mean() < 0.1
    # the replacement comes from other planes as well as from the same plane
    dz = (sources[:, 1] - spots[:, 1]).abs()
    assert (dz == 0).any() and (dz == 2).any()


@pytest.mark.parametrize("psf", [None, gaussian_psf((2.0, 1.0, 1.0), ndim=3)])
@pytest.mark.parametrize("pool_z", [True, False])
def test_3d_blind_spot_is_real(psf, pool_z):
    torch.manual_seed(0)
    net = DecoNoisingNet(psf, depth=2, channels=4, ndim=3, pool_z=pool_z)
    x = torch.randn(2, 1, 8, 20, 20, requires_grad=True)
    masked, mask = apply_blind_spots(x, 0.05, 2, torch.Generator().manual_seed(2))
    denoised, phantom = net(masked)
    loss, _, _ = deconoising_loss(denoised, phantom, x.detach(), mask, positivity=1.0)
    loss.backward()
    assert mask.sum() > 0
    assert x.grad[mask].abs().max() == 0
    assert x.grad[~mask].abs().max() > 0


def test_a_loss_that_is_not_finite_is_a_clear_error():
    from napari_deconoising.core.loss import finite_loss

    assert finite_loss(0.25) == 0.25
    for bad in (float("nan"), float("inf")):
        with pytest.raises(FloatingPointError, match="diverged.*lower learning rate"):
            finite_loss(bad)
