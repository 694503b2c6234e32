import pytest
import torch

from napari_deconoising.core.network import DecoNoisingNet
from napari_deconoising.core.psf import gaussian_psf
from napari_deconoising.core.unet import UNet, unet_receptive_radius


@pytest.mark.parametrize("shape", [(16, 16), (37, 23), (100, 100), (9, 50)])
def test_unet_any_size(shape):
    net = UNet(depth=2, channels=4)
    assert net(torch.randn(2, 1, *shape)).shape == (2, 1, *shape)


def test_unet_3d_is_a_parameter_away():
    net = UNet(depth=2, channels=4, ndim=3)
    assert net(torch.randn(1, 1, 12, 20, 17)).shape == (1, 1, 12, 20, 17)


def test_paper_defaults():
    net = UNet()
    assert net.depth == 3 and net.down[0][0].out_channels == 64


@pytest.mark.parametrize("decoder", ["wide", "lean"])
@pytest.mark.parametrize("upsampling", ["bilinear", "transpose"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_radius_bounds_the_influence_of_a_pixel(depth, upsampling, decoder):
    torch.manual_seed(0)
    net = UNet(depth=depth, channels=4, upsampling=upsampling, decoder=decoder).eval()
    n = 160
    c = 64  # multiple of 2**depth: pooling grid aligned
    x = torch.zeros(1, 1, n, n)
    with torch.no_grad():
        base = net(x)
        x[0, 0, c, c] = 1.0
        diff = (net(x) - base).abs()[0, 0]
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    reach = max((ys - c).abs().max(), (xs - c).abs().max()).item()
    r = unet_receptive_radius(depth)
    assert 0 < reach <= r
    assert reach > r // 2  # and the bound is not absurdly loose


def test_network_returns_denoised_and_phantom():
    net = DecoNoisingNet(gaussian_psf(1.0), depth=2, channels=4)
    den, ph = net(torch.randn(1, 1, 30, 30))
    assert den.shape == ph.shape == (1, 1, 30, 30)
    assert not torch.allclose(den, ph)
    n2v = DecoNoisingNet(None, depth=2, channels=4)
    den, ph = n2v(torch.randn(1, 1, 30, 30))
    assert torch.equal(den, ph)


@pytest.mark.parametrize("pool_z", [True, False])
def test_3d_unet_takes_any_z_and_pools_z_only_when_asked(pool_z):
    net = UNet(depth=2, channels=4, ndim=3, pool_z=pool_z)
    for z in (5, 7, 16):
        assert net(torch.randn(1, 1, z, 20, 17)).shape == (1, 1, z, 20, 17)
    assert net.multiples == ((4, 4, 4) if pool_z else (1, 4, 4))
    assert net.pool.kernel_size == (2 if pool_z else (1, 2, 2))


@pytest.mark.parametrize("pool_z", [True, False])
@pytest.mark.parametrize("upsampling", ["bilinear", "transpose"])
def test_3d_receptive_radius_bounds_the_influence_of_a_voxel(pool_z, upsampling):
    torch.manual_seed(0)
    depth = 2
    net = UNet(depth=depth, channels=2, ndim=3, pool_z=pool_z, upsampling=upsampling).eval()
    n, c = 64, 32
    x = torch.zeros(1, 1, n, n, n)
    with torch.no_grad():
        base = net(x)
        x[0, 0, c, c, c] = 1.0
        diff = (net(x) - base).abs()[0, 0]
    zs, ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    reach_z = (zs - c).abs().max().item()
    reach_yx = max((ys - c).abs().max(), (xs - c).abs().max()).item()
    assert 0 < reach_yx <= unet_receptive_radius(depth)
    rz = unet_receptive_radius(depth, pooled=pool_z)
    assert 0 < reach_z <= rz and reach_z > rz // 2


@pytest.mark.parametrize("ndim", [2, 3])
def test_the_upsampled_branch_gets_a_dense_channels_last_gradient(ndim):
    from napari_deconoising.core.unet import _merge

    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    seen = []

    class Record(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            seen.append(g)
            return g

    shape = (2, 4) + (6,) * ndim
    leaf = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_(True)
    skip = torch.randn(shape).contiguous(memory_format=fmt)
    out = _merge(Record.apply(leaf), skip)
    out.backward(torch.randn(out.shape).contiguous(memory_format=fmt))
    # torch.cat alone hands back a strided channel slice of the gradient
    assert seen[0].is_contiguous(memory_format=fmt)


def test_the_dense_gradient_changes_no_value(monkeypatch):
    import napari_deconoising.core.unet as unet_module

    x = torch.randn(2, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    grads = []
    for plain in (False, True):
        if plain:
            monkeypatch.setattr(unet_module, "_merge", lambda a, s: a if s is None else torch.cat([a, s], dim=1))
        torch.manual_seed(0)
        net = UNet(depth=2, channels=8).to(memory_format=torch.channels_last)
        net(x).square().mean().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _conv_shapes(net: UNet) -> list[tuple[int, int, tuple[int, ...]]]:
    return [(m.in_channels, m.out_channels, tuple(m.kernel_size)) for m in net.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]


def test_the_lean_decoder_is_noise2voids_layout():
    """Depth 2, 32 channels: CSBDeep's/CAREamics' convolutions (bottleneck back to 64, each decoder
    level ending at the next finer level's width), no 1x1 convolutions before up-sampling."""
    lean = _conv_shapes(UNet(depth=2, channels=32, decoder="lean"))
    assert lean == [(1, 32, (3, 3)), (32, 32, (3, 3)), (32, 64, (3, 3)), (64, 64, (3, 3)),
                    (64, 128, (3, 3)), (128, 64, (3, 3)),
                    (128, 64, (3, 3)), (64, 32, (3, 3)), (64, 32, (3, 3)), (32, 32, (3, 3)),
                    (32, 1, (1, 1))]
    wide = _conv_shapes(UNet(depth=2, channels=32, decoder="wide"))
    assert (128, 64, (1, 1)) in wide and (128, 128, (3, 3)) in wide


def test_the_default_decoder_is_the_wide_one():
    assert UNet(depth=2, channels=4).decoder == "wide"
    assert UNet(depth=2, channels=4, ndim=3).decoder == "wide"


def _macs(net: UNet, shape: tuple[int, ...]) -> int:
    total = 0

    def count(m, _i, out):
        nonlocal total
        total += out.numel() * m.in_channels * m.weight[0, 0].numel()

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    with torch.no_grad():
        net(torch.zeros(1, 1, *shape))
    for h in hooks:
        h.remove()
    return total


@pytest.mark.parametrize("depth, channels", [(2, 32), (3, 64)])
def test_the_lean_decoder_costs_less(depth, channels):
    ratio = _macs(UNet(depth=depth, channels=channels, decoder="wide"), (64, 64)) / _macs(
        UNet(depth=depth, channels=channels, decoder="lean"), (64, 64))
    assert 1.1 < ratio < 1.4


@pytest.mark.parametrize("n2v2", [False, True])
@pytest.mark.parametrize("ndim, shape", [(2, (37, 23)), (3, (12, 20, 17))])
def test_the_lean_decoder_takes_any_size(ndim, shape, n2v2):
    net = UNet(depth=2, channels=4, ndim=ndim, decoder="lean", n2v2=n2v2)
    assert net(torch.randn(1, 1, *shape)).shape == (1, 1, *shape)


def test_an_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="decoder must be one of wide, lean"):
        UNet(decoder="narrow")
