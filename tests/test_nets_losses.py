"""Network shapes in 2D/3D, the VGG state-dict layout, and loss values computed by hand."""

from __future__ import annotations

import pytest
import torch

from sr_lib import losses
from sr_lib.nets import SRCNN, MRIFeatureNet, SRGANDiscriminator, SRResNet, VGG19Features, VGGFeatures
from sr_lib.nets.features import VGG19_LAYERS, VGG_LAYERS


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 1, 13, 17)), (3, (1, 1, 9, 11, 7))])
def test_srcnn_keeps_size(spatial_dims, shape):
    assert SRCNN(features=8, spatial_dims=spatial_dims)(torch.rand(shape)).shape == shape


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_srresnet_upsamples_by_scale(scale):
    net = SRResNet(features=8, num_blocks=2, scale=scale)
    assert net(torch.rand(2, 1, 10, 14)).shape == (2, 1, 10 * scale, 14 * scale)


def test_srresnet_rejects_bad_scales():
    with pytest.raises(ValueError, match="power of two"):
        SRResNet(scale=3)
    with pytest.raises(ValueError, match="2D only"):
        SRResNet(scale=2, spatial_dims=3)


@pytest.mark.parametrize("spatial_dims,shape", [(2, (3, 1, 24, 20)), (3, (2, 1, 16, 16, 8))])
def test_discriminator_gives_one_logit_per_item(spatial_dims, shape):
    assert SRGANDiscriminator(features=4, spatial_dims=spatial_dims)(torch.rand(shape)).shape == (shape[0], 1)


def test_vgg19_loads_a_torchvision_style_state_dict(tmp_path):
    reference = VGG19Features(("relu5_4",))
    state = {k: torch.randn_like(v) for k, v in reference.state_dict().items() if k.startswith("features.")}
    state["classifier.0.weight"] = torch.zeros(3, 3)  # torchvision files carry the classifier too
    torch.save(state, tmp_path / "vgg19.pth")
    net = VGG19Features(("relu2_2", "relu5_4")).load_torchvision(str(tmp_path / "vgg19.pth"))
    torch.testing.assert_close(net.features[0].weight, state["features.0.weight"])
    out = net(torch.rand(1, 1, 32, 32))
    assert out["relu2_2"].shape == (1, 128, 16, 16) and out["relu5_4"].shape == (1, 512, 2, 2)
    assert VGG19_LAYERS["relu5_4"] == 35  # torchvision's index, which the state-dict keys follow


def test_vgg19_rejects_other_files(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision vgg19"):
        VGG19Features().load_torchvision(str(tmp_path / "other.pth"))
    with pytest.raises(ValueError, match="unknown vgg19 layers"):
        VGG19Features(("relu9_9",))


def test_vgg16_has_the_7t_papers_layers_and_refuses_a_vgg19_file(tmp_path):
    # The 7T->9.4T paper's VGG-16 "layers 4, 9, 16, 23" (1-based) are these ReLUs in torchvision's indices.
    assert [VGG_LAYERS["vgg16"][n] for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")] == [3, 8, 15, 22]
    net = VGGFeatures(("relu1_2", "relu4_3"), variant="vgg16")
    assert [net(torch.rand(1, 1, 32, 32))[n].shape[1] for n in ("relu1_2", "relu4_3")] == [64, 512]
    vgg19 = VGG19Features(("relu5_4",))
    torch.save({k: v for k, v in vgg19.state_dict().items() if k.startswith("features.")}, tmp_path / "vgg19.pth")
    with pytest.raises(ValueError, match="not a torchvision vgg16"):
        VGGFeatures(("relu5_3",), variant="vgg16").load_torchvision(str(tmp_path / "vgg19.pth"))


def test_mri_feature_net_stages_and_reconstruction():
    net = MRIFeatureNet(features=4)
    x = torch.rand(2, 1, 16, 16)
    out = net(x)
    assert [v.shape[1:] for v in out.values()] == [(4, 16, 16), (8, 8, 8), (16, 4, 4)]
    assert net.reconstruct(x).shape == x.shape


def test_pixel_losses_by_hand():
    pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert losses.pixel_loss(pred, target, kind="l1").item() == pytest.approx(2.5)
    assert losses.pixel_loss(pred, target, kind="mse").item() == pytest.approx(7.5)
    weight = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # mean over the weighted region only
    assert losses.pixel_loss(pred, target, kind="l1", weight=weight).item() == pytest.approx(2.5)
    weight = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])
    assert losses.pixel_loss(pred, target, kind="mse", weight=weight).item() == pytest.approx(16.0)
    with pytest.raises(ValueError, match="shapes differ"):
        losses.pixel_loss(pred, target[..., :1])


def test_adversarial_losses_by_hand():
    logits = torch.zeros(4, 1)  # D(x) = 0.5 -> BCE = log 2 either way
    assert losses.adversarial_loss(logits, True).item() == pytest.approx(0.693147, rel=1e-5)
    assert losses.adversarial_loss(torch.ones(4, 1), True, kind="lsgan").item() == 0.0
    assert losses.adversarial_loss(torch.ones(4, 1), False, kind="lsgan").item() == 1.0
    assert losses.adversarial_loss(torch.full((4, 1), 3.0), True, kind="wgan").item() == -3.0
    with pytest.raises(ValueError, match="unknown adversarial"):
        losses.adversarial_loss(logits, True, kind="hinge")


def test_gradient_penalty_of_a_unit_slope_critic_is_zero():
    critic = lambda x: x.flatten(1).sum(1, keepdim=True) / x[0].numel() ** 0.5  # |grad| = 1 everywhere
    assert losses.gradient_penalty(critic, torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)).item() == pytest.approx(0, abs=1e-10)


def test_gradient_difference_tv_and_gram():
    ramp = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 4, 5)
    assert losses.total_variation(ramp).item() == pytest.approx(1.0)  # slope 1 along one axis, 0 along the other
    assert losses.gradient_difference_loss(ramp, ramp).item() == 0.0
    assert losses.gradient_difference_loss(ramp, torch.zeros_like(ramp)).item() == pytest.approx(0.5)
    # Eq. 4 squares the difference: slope 3 vs flat gives 9 on one axis, 0 on the other
    assert losses.gradient_difference_loss(3 * ramp, torch.zeros_like(ramp)).item() == pytest.approx(4.5)
    assert losses.gradient_difference_loss(3 * ramp, torch.zeros_like(ramp), alpha=1).item() == pytest.approx(1.5)
    x = torch.ones(1, 2, 3, 3)
    torch.testing.assert_close(losses.gram_matrix(x), torch.ones(1, 2, 2))


def test_feature_and_texture_losses_vanish_on_identical_images():
    net = MRIFeatureNet(features=4)
    x = torch.rand(2, 1, 16, 16)
    assert losses.feature_loss(net, x, x).item() == 0.0
    assert losses.texture_loss(net, x, x).item() == 0.0
    assert losses.feature_loss(net, x, torch.zeros_like(x)).item() > 0
