import numpy as np
import pytest

from napari_deconoising.core.network import DecoNoisingNet
from napari_deconoising.core.psf import gaussian_psf


@pytest.mark.parametrize("ndim", [2, 3])
def test_param_groups_put_the_phantom_head_alone_at_its_rate(ndim):
    net = DecoNoisingNet(gaussian_psf(1.0, ndim=ndim), depth=2, channels=4, ndim=ndim)
    (one,) = net.param_groups(1e-3)
    assert one["lr"] == 1e-3 and len(one["params"]) == len(list(net.parameters()))
    body, head = net.param_groups(1e-3, head_lr_scale=10.0)
    assert head["lr"] == pytest.approx(1e-2) and body["lr"] == 1e-3
    assert {id(p) for p in head["params"]} == {id(net.unet.head.weight), id(net.unet.head.bias)}
    # every parameter in exactly one group
    ids = [id(p) for g in (body, head) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())


def test_noise2void_net_has_a_head_too():
    net = DecoNoisingNet(None, depth=2, channels=4)
    assert len(net.param_groups(1e-3, 3.0)) == 2
    assert np.isclose(net.param_groups(1e-3, 3.0)[1]["lr"], 3e-3)
