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


@pytest.mark.parametrize("psf", [gaussian_psf(1.2), _asymmetric_psf(), None], ids=["gauss", "asym", "n2v"])
def test_state_dict_alone_rebuilds_the_network(psf, rng):
    torch.manual_seed(0)
    ref = DecoNoisingNet(psf, depth=2, channels=8).eval()
    packed = BioimageioDecoNoisingNet.from_parts(ref.state_dict(), psf, depth=2, channels=8, ndim=2)
    sd = packed.state_dict()
    assert PSF_KEY in sd
    # What a bioimage.io consumer does: build from the rdf.yaml kwargs, then load the weights.
    shape = [1, 1] if psf is None else list(psf.shape)
    fresh = BioimageioDecoNoisingNet(depth=2, channels=8, ndim=2, psf_shape=shape)
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
