"""The shared machinery of paired methods: reconstruction losses, `PairedNetMethod`'s
generator and critic steps, named presets, the 7T paper's stitched inference and the seam
measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sr_lib.infer import patch_starts, predict_volume, seam_lines, stitch_patches
from sr_lib.losses import reconstruction_loss, ssim_loss
from sr_lib.methods.base import FitContext, Task, TrainData, preset
from sr_lib.methods.paired import PairedNetMethod, PairedOptions
from sr_lib.nets import SRGANDiscriminator
from sr_lib.profiles import get_profile
from sr_lib.seams import seam_scores, volume_seam_lines

PROFILE = get_profile("test")


class TinyPaired(PairedNetMethod):
    name = "tiny-paired"

    def build_generator(self) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def build_discriminator(self, in_channels: int) -> nn.Module:
        return SRGANDiscriminator(in_channels=in_channels, features=4)


class TinyConditional(TinyPaired):
    name = "tiny-conditional"
    conditional = True


def tiny(options: dict | None = None, cls: type = TinyPaired) -> PairedNetMethod:
    return cls(Task((1, 1, 1)), cls.Options.resolve(PROFILE, options or {}), PROFILE)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(4, 1, 16, 16, generator=g)
    return {"lr": (hr + 0.1 * torch.randn(hr.shape, generator=g)).clamp(0, 1), "hr": hr}


def parameters(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def changed(before: list[torch.Tensor], net: nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


# ----------------------------------------------------------------------------- losses


def test_reconstruction_loss_weights_known_terms():
    pred, target = torch.full((1, 1, 16, 16), 0.75), torch.full((1, 1, 16, 16), 0.25)
    total, values = reconstruction_loss(pred, target, {"l1": 2.0, "l2": 1.0, "tv": 3.0, "gradient": 0.0})
    assert values == {"l1": pytest.approx(0.5), "l2": pytest.approx(0.25), "tv": pytest.approx(0.0)}
    assert float(total) == pytest.approx(2 * 0.5 + 0.25)


def test_reconstruction_loss_refuses_unknown_terms_and_missing_features():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="unknown loss term"):
        reconstruction_loss(x, x, {"l3": 1.0})
    with pytest.raises(ValueError, match="perceptual loss needs a feature net"):
        reconstruction_loss(x, x, {"perceptual": 1.0})


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 1, 12, 12, 12)])
def test_ssim_loss_is_zero_for_identical_images_and_differentiable(shape):
    x = torch.rand(shape)
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    y = torch.rand(shape, requires_grad=True)
    loss = ssim_loss(y, x)
    loss.backward()
    assert float(loss.detach()) > 0.5 and y.grad is not None and y.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- PairedNetMethod


def test_options_refuse_what_cannot_train():
    with pytest.raises(ValueError, match="nothing to train on"):
        PairedOptions.resolve(PROFILE, {"l1": 0.0})
    with pytest.raises(ValueError, match="adversarial must be one of"):
        PairedOptions.resolve(PROFILE, {"adversarial": "hinge"})
    with pytest.raises(ValueError, match="inference must be one of"):
        PairedOptions.resolve(PROFILE, {"inference": "tile"})
    PairedOptions.resolve(PROFILE, {"l1": 0.0, "adversarial": "bce", "adversarial_weight": 1.0})  # a pure GAN is allowed


def test_generator_step_without_adversary_lowers_the_loss():
    torch.manual_seed(0)
    method = tiny({"lr": 3e-3})
    method.train_mode(True)
    fixed = batch()
    first = method.training_step(fixed, 0)["l1"]
    for step in range(1, 40):
        last = method.training_step(fixed, step)["l1"]
    assert last < 0.7 * first


@pytest.mark.parametrize("kind", ["bce", "lsgan", "wgan-gp"])
def test_critic_and_generator_steps_update_their_own_net_only(kind):
    method = tiny({"adversarial": kind, "adversarial_weight": 0.1})
    method.train_mode(True)
    generator, critic = method.nets["generator"], method.nets["discriminator"]
    g0, d0 = parameters(generator), parameters(critic)
    assert set(method.critic_step(batch(1), 0)) == {"d_loss"}
    assert changed(d0, critic) and not changed(g0, generator)
    d1 = parameters(critic)
    values = method.training_step(batch(2), 0)
    assert "adversarial" in values and changed(g0, generator) and not changed(d1, critic)


def test_warmup_trains_the_generator_alone_first():
    method = tiny({"adversarial": "bce", "adversarial_weight": 0.1, "warmup": 0.5, "steps": 10})
    method.train_mode(True)
    d0 = parameters(method.nets["discriminator"])
    assert method.critic_step(batch(), 4) == {} and "adversarial" not in method.training_step(batch(), 4)
    assert not changed(d0, method.nets["discriminator"])
    assert "adversarial" in method.training_step(batch(), 5)


def test_conditional_critic_sees_the_input_stacked_with_the_image():
    method = tiny({"adversarial": "bce", "adversarial_weight": 0.1}, TinyConditional)
    b = batch()
    stacked = method.critic_input(b["lr"], b["hr"])
    assert stacked.shape == (4, 2, 16, 16)
    torch.testing.assert_close(stacked[:, :1], b["lr"])
    assert method.nets["discriminator"].features[0].in_channels == 2


def test_zero_init_starts_a_residual_generator_at_its_input():
    method = tiny({"zero_init": True})
    b = batch()
    torch.testing.assert_close(method.predict_batch(b["lr"]), b["lr"].clamp(0, 1))


def test_fit_is_seeded_and_stitched_prediction_has_the_volume_shape():
    rng = np.random.default_rng(0)
    volumes = [(v, v, None) for v in (rng.random((20, 24, 5), dtype=np.float32) for _ in range(3))]
    data = TrainData(volumes[:2], volumes[2:])
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)  # initial weights; the run seeds this before building, as `sr_lib.runs` does
        method = tiny({"adversarial": "wgan-gp", "adversarial_weight": 0.01, "critic_steps": 2, "inference": "stitch", "steps": 6})
        method.fit(data, FitContext(seed=3, progress=False))
        outputs.append(method.predict_volume(volumes[2][0]))
    assert outputs[0].shape == (20, 24, 5)
    np.testing.assert_array_equal(outputs[0], outputs[1])


# ----------------------------------------------------------------------------- presets


def test_a_preset_changes_defaults_and_keeps_the_code():
    named = preset(TinyPaired, "tiny-gdl", "tiny with the gradient loss", gradient=0.5, l1=2.0)
    options = named.Options.resolve(PROFILE, {})
    assert (options.gradient, options.l1, options.lr) == (0.5, 2.0, PROFILE.lr)
    assert named.Options.resolve(PROFILE, {"gradient": 0.0}).gradient == 0.0  # the user's option still wins
    assert named.preset_of == "tiny-paired" and named.preset_options == {"gradient": 0.5, "l1": 2.0}
    assert issubclass(named, TinyPaired) and named.name == "tiny-gdl"
    with pytest.raises(TypeError, match="has no option"):
        preset(TinyPaired, "bad", "bad", gradiant=1.0)


# ----------------------------------------------------------------------------- stitching and seams


def test_patch_starts_cover_the_axis_and_end_flush():
    assert patch_starts(20, 8, 4) == [0, 4, 8, 12]
    assert patch_starts(21, 8, 6) == [0, 6, 12, 13]
    assert patch_starts(5, 8, 4) == [0]


def test_seam_lines_are_where_cropped_patches_meet():
    # patches at 0, 4, 8, 12 of 8 px, 1 px cropped except on the image edge: kept 0-7, 5-11, 9-15, 13-20
    assert seam_lines(20, factor=1, patch=8, stride=4, border=1) == [5, 7, 9, 11, 13, 15]
    # LR patches at 0, 4, 6 of 4 voxels -> HR 0-8, 8-16, 12-20, kept 0-7, 9-15, 13-20
    assert seam_lines(10, factor=2, patch=4, stride=4, border=1) == [7, 9, 13, 15]


@pytest.mark.parametrize("factors,shape", [((1, 1), (2, 1, 19, 23)), ((2, 2), (1, 1, 13, 10)), ((1, 1, 1), (1, 1, 11, 9, 13))])
def test_stitching_a_pointwise_predictor_is_exact(factors, shape):
    images = torch.rand(shape)

    def upsample(x):
        for axis, f in enumerate(factors):
            x = x.repeat_interleave(f, dim=2 + axis)
        return 2 * x

    out = stitch_patches(upsample, images, factors=factors, patch=6, stride=3, border=1)
    torch.testing.assert_close(out, upsample(images))


def test_stitching_with_patchwise_errors_scores_seams_and_whole_slices_do_not():
    target = np.zeros((40, 40, 3), np.float32)
    lr = target + 0.5
    task = Task((1, 1, 1), 2, 2)
    torch.manual_seed(0)
    # each patch's prediction is off by its own constant, so stitching leaves steps where patches meet
    stitched = predict_volume(lambda x: x - 0.5 + 0.2 * torch.rand(x.shape[0], 1, 1, 1), lr, task=task,
                              mode="stitch", stitch=(16, 12, 1))
    lines = volume_seam_lines(lr.shape, factors=(1, 1, 1), slice_axis=2, patch=16, stride=12, border=1)
    assert set(lines) == {0, 1}
    whole = predict_volume(lambda x: x - 0.5, lr, task=task, mode="whole")
    noise = np.random.default_rng(0).normal(0, 0.005, whole.shape)  # so steps away from the lines are not all zero
    control = whole + noise
    assert seam_scores(stitched + noise, target, lines)["jump_ratio"] > 5
    assert 0.7 < seam_scores(control, target, lines)["jump_ratio"] < 1.3


def test_seam_scores_known_values():
    error = np.tile(0.1 * np.arange(8.0), (8, 1))
    error[:, 4:] += 1.0  # steps of 0.1 along axis 1, except 1.1 across the line between columns 3 and 4
    scores = seam_scores(error, np.zeros((8, 8)), {1: [4]})
    assert scores["jump_ratio"] == pytest.approx(1.21 / 0.01)
    assert scores["error_ratio"] == pytest.approx(((0.3 + 1.4) / 2) / ((0 + 0.1 + 0.2 + 1.5 + 1.6 + 1.7) / 6))
    assert scores["seam_fraction"] == pytest.approx(2 / 8)
    masked = seam_scores(error, np.zeros((8, 8)), {1: [4]}, mask=np.arange(8)[None, :].repeat(8, 0) < 4)
    assert np.isnan(masked["jump_ratio"])  # no scored pair crosses the line inside the mask


def test_unknown_inference_mode_is_refused():
    with pytest.raises(ValueError, match="unknown inference mode"):
        predict_volume(lambda x: x, np.zeros((4, 4, 4), np.float32), task=Task((1, 1, 1)), mode="tiles")
