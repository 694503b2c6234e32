"""The importable architecture of the pytorch_state_dict weights: the PSF travels in the state dict."""

import numpy as np
import pytest
import torch

from napari_deconoising.bioimageio.architecture import PSF_KEY, BioimageioDecoNoisingNet
from napari_deconoising.core import DecoNoisingNet, gaussian_psf, prepare_psf


def _asymmetric_psf():
    k = np.zeros((7, 5), np.float32)
    k[3, 2], k[2, 2], k[3, 4], k[5, 1] = 1.0, 0.5, 0.25, 0.3
    return prepare_psf(k)


@pytest.mark.parametrize("decoder", ["wide", "lean"])
@pytest.mark.parametrize("psf", [gaussian_psf(1.2), _asymmetric_psf(), None], ids=["gauss", "asym", "n2v"])
def test_state_dict_alone_rebuilds_the_network(psf, decoder, rng):
    torch.manual_seed(0)
    ref = DecoNoisingNet(psf, depth=2, channels=8, decoder=decoder).eval()
    packed = BioimageioDecoNoisingNet.from_parts(ref.state_dict(), psf, depth=2, channels=8, ndim=2, decoder=decoder)
    sd = packed.state_dict()
    assert PSF_KEY in sd
    # What a bioimage.io consumer does: build from the rdf.yaml kwargs, then load the weights.
    # Packages from before the decoder choice have no "decoder" among them: theirs is wide.
    shape = [1, 1] if psf is None else list(psf.shape)
    kw = {} if decoder == "wide" else {"decoder": decoder}
    fresh = BioimageioDecoNoisingNet(depth=2, channels=8, ndim=2, psf_shape=shape, **kw)
    fresh.load_state_dict(sd)
    fresh.eval()
    x = torch.from_numpy(rng.normal(size=(2, 1, 52, 44)).astype(np.float32))
    with torch.no_grad():
        for a, b in zip(ref(x), fresh(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert packed.network_state_dict().keys() == ref.state_dict().keys()


def test_before_loading_the_psf_is_the_identity():
    net = BioimageioDecoNoisingNet(depth=2, channels=8, psf_shape=[5, 5]).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        den, phantom = net(x)
    torch.testing.assert_close(den, phantom)


def test_psf_of_the_wrong_shape_is_refused():
    net = BioimageioDecoNoisingNet(depth=2, channels=8, psf_shape=[5, 5])
    sd = dict(net.state_dict())
    sd[PSF_KEY] = torch.ones(7, 7) / 49
    with pytest.raises(RuntimeError, match="psf_kernel"):
        net.load_state_dict(sd)


def test_channel_net_applies_network_k_to_channel_k(rng):
    from napari_deconoising.bioimageio.architecture import BioimageioChannelNet

    torch.manual_seed(0)
    refs = [DecoNoisingNet(gaussian_psf(1.0), depth=2, channels=8, decoder="wide").eval(),  # kwargs' default
            DecoNoisingNet(None, depth=2, channels=4, decoder="wide").eval()]
    parts = [BioimageioDecoNoisingNet.from_parts(refs[0].state_dict(), gaussian_psf(1.0), depth=2, channels=8, ndim=2),
             BioimageioDecoNoisingNet.from_parts(refs[1].state_dict(), None, depth=2, channels=4, ndim=2)]
    kwargs = [{"depth": 2, "channels": 8, "ndim": 2, "psf_shape": list(gaussian_psf(1.0).shape)},
              {"depth": 2, "channels": 4, "ndim": 2, "psf_shape": [1, 1]}]
    packed = BioimageioChannelNet(kwargs)
    for sub, part in zip(packed.nets, parts):
        sub.load_state_dict(part.state_dict())
    # a consumer builds from rdf.yaml's kwargs and loads the one state dict: each PSF comes back
    fresh = BioimageioChannelNet(kwargs).eval()
    fresh.load_state_dict(packed.state_dict())
    assert f"nets.0.{PSF_KEY}" in packed.state_dict()
    x = torch.from_numpy(rng.normal(size=(2, 2, 36, 44)).astype(np.float32))
    with torch.no_grad():
        den, phantom = fresh(x)
        for k, ref in enumerate(refs):
            want_den, want_phantom = ref(x[:, k:k + 1])
            torch.testing.assert_close(den[:, k:k + 1], want_den, rtol=0, atol=0)
            torch.testing.assert_close(phantom[:, k:k + 1], want_phantom, rtol=0, atol=0)
    with pytest.raises(ValueError, match="at least one"):
        BioimageioChannelNet([])


@pytest.mark.parametrize("fixture", ["trained", "trained3d"])
def test_the_exported_network_computes_what_the_model_computes(request, fixture, rng):
    """Also without Z pooling (thin 3D patches): pool_z changes the output, not the weights' shapes."""
    from napari_deconoising.bioimageio.files import build_net

    model = request.getfixturevalue(fixture)
    shape = (1, 1, 16, 48, 48) if model.ndim == 3 else (1, 1, 48, 48)
    x = torch.from_numpy(rng.normal(size=shape).astype(np.float32))
    with torch.no_grad():
        for a, b in zip(build_net(model)(x), model.build_network()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
