"""The 7T->9.4T paper's supervised networks: nets on odd 2D/3D sizes, the PatchGAN's 70 px
receptive field measured by a gradient, DCSRN's dense block and parameter counts against the
paper's Tables 2-3 and a count by hand, the sharpening kernel, every method and preset
trained and applied through `fit`/`predict`, and the presets' options against the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr_lib.methods import METHODS, FitContext, TrainData, build
from sr_lib.methods.synthesis_cnns import PRESETS as CNN_PRESETS
from sr_lib.methods.synthesis_gans import PRESETS as GAN_PRESETS
from sr_lib.methods.synthesis_gans import sharpen, sharpening_kernel
from sr_lib.nets import DCSRN, FCN1, FCN2, DCGANDiscriminator, DCGANGenerator, PatchGAN, UNet
from sr_lib.profiles import get_profile

CNNS = ("fcn1", "fcn2", "dcsrn", "unet")
GANS = ("dcgan", "unet-gan", "pix2pix")
PRESET_NAMES = tuple(cls.name for cls in CNN_PRESETS + GAN_PRESETS)


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(autouse=True)
def offline_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))  # the MRI feature net of perceptual presets
    for name in ("SR_LIB_VGG16", "SR_LIB_VGG19"):
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------------------- nets


GENERATORS = {
    "fcn1": lambda d: FCN1(features=4, spatial_dims=d, kernel_size=3),
    "fcn2": lambda d: FCN2(features=4, spatial_dims=d),
    "dcsrn": lambda d: DCSRN(features=4, growth=3, spatial_dims=d),
    "unet": lambda d: UNet(features=4, depth=3, spatial_dims=d),
    "dcgan": lambda d: DCGANGenerator.paper("model3", width_scale=0.25, spatial_dims=d),
}


@pytest.mark.parametrize("net", sorted(GENERATORS))
@pytest.mark.parametrize("shape", [(2, 1, 13, 17), (1, 1, 9, 11, 7)], ids=["2d", "3d"])
def test_generators_keep_odd_sizes(net, shape):
    model = GENERATORS[net](len(shape) - 2)
    out = model(torch.rand(shape))
    assert out.shape == shape and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(1, 1, 16, 16), (1, 1, 37, 45), (2, 1, 12, 12, 12)])
def test_unet_pads_to_its_depth_and_crops_back(shape):
    """A 6-level U-Net needs multiples of 64 inside; tiny patches and odd whole slices both work."""
    net = UNet(features=2, depth=6 if len(shape) == 4 else 3, spatial_dims=len(shape) - 2).eval()
    x = torch.rand(shape)
    assert net(x).shape == shape
    x2 = x.clone()
    x2[..., -1] += 1.0  # the output depends on the input's last column (it is inside the crop, not padding)
    assert not torch.equal(net(x), net(x2))


def test_unet_drops_out_where_pix2pix_does():
    """pix2pix's dropout sits in the decoder blocks 8 * ngf wide on both sides, not the innermost: one at depth 6."""
    assert sum(isinstance(m, torch.nn.Dropout) for m in UNet(features=2, depth=6, dropout=0.5).modules()) == 1
    assert not any(isinstance(m, torch.nn.Dropout) for m in UNet(features=2, depth=6).modules())


@pytest.mark.parametrize("spatial_dims,shape", [(2, (3, 1, 16, 16)), (2, (2, 1, 7, 9)), (3, (2, 1, 12, 12, 12))])
def test_dcgan_discriminator_gives_one_logit_per_image(spatial_dims, shape):
    assert DCGANDiscriminator(features=4, spatial_dims=spatial_dims)(torch.rand(shape)).shape == (shape[0], 1)


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 2, 16, 16)), (2, (1, 2, 13, 17)), (3, (1, 2, 12, 12, 12))])
def test_patchgan_gives_a_map_of_logits_even_on_tiny_patches(spatial_dims, shape):
    out = PatchGAN(features=4, spatial_dims=spatial_dims)(torch.rand(shape))
    assert out.shape[:2] == (shape[0], 1) and out.ndim == len(shape) and min(out.shape[2:]) >= 1


def test_patchgan_receptive_field_is_70_pixels():
    """The gradient of one output logit w.r.t. the input is non-zero on exactly a 70x70 square."""
    torch.manual_seed(0)
    net = PatchGAN(in_channels=2, features=8).double().eval()  # eval: batch norm does not mix pixels
    x = torch.rand(1, 2, 160, 160, dtype=torch.float64, requires_grad=True)
    out = net(x)
    i, j = out.shape[2] // 2, out.shape[3] // 2
    out[0, 0, i, j].backward()
    support = x.grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = torch.nonzero(support.any(dim=1)).flatten(), torch.nonzero(support.any(dim=0)).flatten()
    assert 0 < rows.min() and rows.max() < 159 and 0 < cols.min() and cols.max() < 159  # not clipped by the border
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (70, 70)
    assert bool(support[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all())


def test_dcsrn_dense_block_feeds_24_plus_4_times_24_maps_to_the_output_conv():
    net = DCSRN()  # the paper's: 24 filters, 4 units, growth 24
    assert [unit.body[-1].in_channels for unit in net.units] == [24, 48, 72, 96]
    assert net.block_channels == 120 and net.tail[-1].in_channels == 120
    seen = {}
    net.tail.register_forward_hook(lambda module, args, output: seen.update(channels=args[0].shape[1]))
    net(torch.rand(1, 1, 9, 9))
    assert seen["channels"] == 120


def test_dcsrn_parameter_count_by_hand():
    # features 4, growth 3, 2 units, 2D, 3x3 convs with bias:
    # head 1->4: 9*4 + 4 = 40; unit 1: BN(4) 8 + conv 4->3 9*4*3 + 3 = 111; unit 2: BN(7) 14 + conv 7->3 192;
    # tail: BN(10) 20 + conv 10->1 9*10 + 1 = 91
    assert count(DCSRN(features=4, growth=3, num_units=2)) == 40 + 8 + 111 + 14 + 192 + 20 + 91
    # 3D: every conv weight has 3x more taps
    assert count(DCSRN(features=4, growth=3, num_units=2, spatial_dims=3)) == 4 * 27 + 4 + 8 + 4 * 27 * 3 + 3 + 14 + 7 * 27 * 3 + 3 + 20 + 10 * 27 + 1


@pytest.mark.parametrize("net,expected", [
    (lambda: DCSRN(), 53_977),                            # Table 2, DCSRN
    (lambda: UNet(features=16, depth=6), 1_829_025),      # Table 3, models 5-11 (pix2pix U-Net, ngf 16)
    (lambda: DCGANGenerator.paper("model2"), 458_385),    # Table 3, model 2
    (lambda: DCGANGenerator.paper("model3"), 868_369),    # Table 3, models 3 and 4
], ids=["dcsrn", "unet", "dcgan-model2", "dcgan-model3"])
def test_parameter_counts_match_the_papers_tables(net, expected):
    assert count(net()) == expected


def test_nets_refuse_bad_arguments():
    with pytest.raises(ValueError, match="depth must be at least 2"):
        UNet(depth=1)
    with pytest.raises(ValueError, match="unknown DCGAN generator"):
        DCGANGenerator.paper("model4")
    with pytest.raises(ValueError, match="odd kernel"):
        FCN1(kernel_size=4)
    with pytest.raises(ValueError, match="unknown norm"):
        DCSRN(norm="group")


# ----------------------------------------------------------------------------- sharpening


@pytest.mark.parametrize("shape", [(2, 1, 9, 11), (1, 1, 6, 7, 5)])
def test_sharpening_leaves_a_constant_image_unchanged(shape):
    assert float(sharpening_kernel(len(shape) - 2).sum()) == 1.0
    x = torch.full(shape, 0.37)
    torch.testing.assert_close(sharpen(x), x)  # borders too (edges replicated)


def test_sharpening_amplifies_a_step():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:] = 0.5  # a vertical edge of height 0.5
    y = sharpen(x)
    torch.testing.assert_close(y[..., :3], x[..., :3])  # flat areas unchanged
    torch.testing.assert_close(y[..., 5:], x[..., 5:])
    assert float(y[0, 0, 3, 3]) == pytest.approx(-0.5) and float(y[0, 0, 3, 4]) == pytest.approx(1.0)
    assert float(y[0, 0, 3, 4] - y[0, 0, 3, 3]) == pytest.approx(3 * 0.5)  # the jump across the edge, tripled


def test_model_6_is_model_5_followed_by_the_sharpening_kernel():
    lr = torch.rand(2, 1, 16, 16)
    outputs = {}
    for name in ("7t-m5", "7t-m6"):
        torch.manual_seed(0)
        outputs[name] = build(name, factors=(1, 1, 1), profile="test").forward(lr)
    torch.testing.assert_close(outputs["7t-m6"], sharpen(outputs["7t-m5"]))


# ----------------------------------------------------------------------------- methods through fit / predict


def volumes(n: int, hr_shape: tuple[int, int, int], factors: tuple[int, int, int], seed: int):
    """Smooth random HR volumes in [0, 1] and their area-downsampled LR (or a noisy copy on the same grid)."""
    rng = np.random.default_rng(seed)
    triples = []
    for _ in range(n):
        hr = torch.from_numpy(rng.random(hr_shape, dtype=np.float32))[None, None]
        hr = torch.nn.functional.avg_pool3d(hr, 3, stride=1, padding=1, count_include_pad=False)[0, 0]
        if factors == (1, 1, 1):
            lr = (hr + 0.05 * torch.from_numpy(rng.standard_normal(hr_shape).astype(np.float32))).clamp(0, 1)
        else:
            lr = torch.nn.functional.avg_pool3d(hr[None, None], factors)[0, 0]
        triples.append((lr.numpy(), hr.numpy(), None))
    return triples


def fit_and_predict(name: str, factors=(1, 1, 1), hr_shape=(24, 24, 6), dims=None, **options):
    torch.manual_seed(0)
    method = build(name, factors=factors, profile="test", dims=dims, steps=2, **options)
    data = volumes(3, hr_shape, factors, seed=1)
    facts = method.fit(TrainData(data[:2], data[2:]), FitContext(seed=0, progress=False))
    prediction = method.predict_volume(data[2][0])
    return method, facts, prediction, data[2][1]


@pytest.mark.parametrize("name", CNNS + GANS + PRESET_NAMES)
def test_every_method_and_preset_trains_and_predicts_in_the_test_profile(name):
    method, facts, prediction, hr = fit_and_predict(name)
    assert facts["steps_done"] == 2
    assert prediction.shape == hr.shape and prediction.dtype == np.float32 and np.isfinite(prediction).all()
    assert (name in GANS or METHODS[name].preset_of in GANS) == ("discriminator" in method.nets)


@pytest.mark.parametrize("name", CNNS + ("unet-gan",))
def test_methods_run_on_a_small_grid(name):
    method, _, prediction, hr = fit_and_predict(name, factors=(2, 2, 1))
    assert method.task.working_factors == (2, 2)
    assert prediction.shape == hr.shape == (24, 24, 6)


@pytest.mark.parametrize("name", CNNS)
def test_cnns_run_in_3d(name):
    method, _, prediction, hr = fit_and_predict(name, hr_shape=(14, 13, 12), dims=3)
    assert method.task.spatial_dims == 3
    assert prediction.shape == hr.shape == (14, 13, 12)


@pytest.mark.parametrize("name", CNNS + GANS)
def test_zero_init_starts_each_generator_at_its_input(name):
    """`zero_init` zeroes the generator's output layer (the last convolution registered), so a residual net starts at the input."""
    method = build(name, factors=(1, 1, 1), profile="test", residual=True, zero_init=True)
    lr = torch.rand(2, 1, 13, 16)
    torch.testing.assert_close(method.predict_batch(lr), lr)


def test_unet_training_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    method = build("unet", factors=(1, 1, 1), profile="test", lr=1e-3)
    method.train_mode(True)
    g = torch.Generator().manual_seed(0)
    hr = torch.nn.functional.avg_pool2d(torch.rand(4, 1, 16, 16, generator=g), 3, stride=1, padding=1)
    batch = {"lr": (hr + 0.1 * torch.randn(hr.shape, generator=g)).clamp(0, 1), "hr": hr}
    first = method.training_step(batch, 0)["l1"]
    for step in range(1, 30):
        last = method.training_step(batch, step)["l1"]
    assert last < 0.7 * first  # from the noisy input itself (zero_init): 0.080 -> 0.043


def test_gan_steps_use_their_discriminator():
    method = build("pix2pix", factors=(1, 1, 1), profile="test", steps=4)
    method.train_mode(True)
    assert method.nets["discriminator"].body[0].in_channels == 2  # conditional: input stacked with the image
    hr = torch.rand(4, 1, 16, 16)
    batch = {"lr": hr.clone(), "hr": hr}
    assert method.critic_step(batch, 0) == {}  # warm-up: 25% of 4 steps
    assert "d_loss" in method.critic_step(batch, 1) and "adversarial" in method.training_step(batch, 1)


# ----------------------------------------------------------------------------- options and presets


def resolved(name: str):
    return METHODS[name].Options.resolve(get_profile("full"), {})


PAPER_CONFIGURATIONS = {
    # name: (base method, options that make it the paper's configuration)
    "dcsrn-l1": ("dcsrn", dict(l1=1.0, l2=0.0, perceptual=0.0, features=24, growth=24, num_units=4)),
    "dcsrn-l2": ("dcsrn", dict(l1=0.0, l2=1.0, perceptual=0.0)),
    "dcsrn-perceptual": ("dcsrn", dict(l1=0.0, l2=0.0, perceptual=1.0, perceptual_net="vgg16",
                                       perceptual_layers="relu1_2,relu2_2,relu3_3,relu4_3")),
    "7t-m1": ("dcgan", dict(architecture="model1", adversarial="bce", l1=1.0, gradient=10.0)),
    "7t-m2": ("dcgan", dict(architecture="model2", adversarial="bce", l1=1.0, gradient=0.0)),
    "7t-m3": ("dcgan", dict(architecture="model3", adversarial="bce", l1=1.0, gradient=0.0)),
    "7t-m4": ("dcgan", dict(architecture="model3", adversarial="bce", l1=1.0, gradient=10.0)),
    "7t-m5": ("unet-gan", dict(adversarial="bce", l1=1.0, gradient=10.0, sharpen=False, features=16)),
    "7t-m6": ("unet-gan", dict(adversarial="bce", l1=1.0, gradient=10.0, sharpen=True)),
    "7t-m7": ("unet-gan", dict(adversarial="bce", l1=1.0, gradient=0.0, sharpen=False)),
    "7t-m8": ("unet-gan", dict(adversarial="bce", l1=1.0, gradient=1.0, sharpen=False)),
    "7t-m9": ("pix2pix", dict(adversarial="bce", adversarial_weight=1.0, l1=100.0, l2=0.0, perceptual=0.0)),
    "7t-m10": ("pix2pix", dict(adversarial="bce", adversarial_weight=1.0, l1=0.0, l2=100.0, perceptual=0.0)),
    "7t-m11": ("pix2pix", dict(adversarial="bce", adversarial_weight=1.0, l1=100.0, l2=0.0, perceptual=10.0)),
}


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGURATIONS))
def test_presets_resolve_to_the_papers_configuration(name):
    base, expected = PAPER_CONFIGURATIONS[name]
    assert METHODS[name].preset_of == base and METHODS[name].summary
    options = resolved(name)
    assert {key: getattr(options, key) for key in expected} == expected


def test_preset_table_covers_every_preset_and_the_papers_headline_settings():
    assert set(PAPER_CONFIGURATIONS) == set(PRESET_NAMES)
    m11 = resolved("7t-m11")
    assert m11.perceptual > 0 and m11.l1 > 0 and METHODS["7t-m11"].conditional
    assert [resolved(f"7t-m{i}").gradient > 0 for i in range(1, 9)] == [True, False, False, True, True, True, False, True]
    assert resolved("fcn1").l2 == 1.0 and resolved("fcn1").l1 == 0.0  # the paper trains its FCNs with L2
    assert resolved("dcsrn").l1 == 1.0  # Table 2's best
    assert resolved("pix2pix").l1 == 100.0  # pix2pix's lambda


def test_profiles_cap_the_widths():
    test = METHODS["unet-gan"].Options.resolve(get_profile("test"), {})
    full = METHODS["unet-gan"].Options.resolve(get_profile("full"), {})
    assert (test.features, full.features) == (8, 16)
    assert METHODS["dcsrn"].Options.resolve(get_profile("quick"), {}).growth == 24
    dcgan = [METHODS["dcgan"].Options.resolve(get_profile(p), {}).features for p in ("test", "quick", "full")]
    assert dcgan == [2, 4, 16]  # the paper's widths at full, a quarter at quick


@pytest.mark.parametrize("name,bad,match", [
    ("fcn1", {"norm": "group"}, "norm must be one of"),
    ("fcn1", {"kernel_size": 4}, "kernel_size must be odd"),
    ("dcgan", {"architecture": "model4"}, "architecture must be one of"),
    ("unet", {"depth": 1}, "depth must be at least 2"),
    ("unet-gan", {"dropout": 1.0}, "dropout is a probability"),
    ("dcsrn", {"growth": 0}, "growth must be positive"),
])
def test_options_refuse_bad_values(name, bad, match):
    with pytest.raises(ValueError, match=match):
        build(name, factors=(1, 1, 1), profile="test", **bad)


def test_dcgan_model1_keeps_the_papers_size_in_every_profile_while_model2_shrinks():
    def generator_size(name: str, profile: str) -> int:
        method = build(name, factors=(1, 1, 1), profile=profile)
        return sum(p.numel() for p in method.nets["generator"].parameters())

    assert {generator_size("7t-m1", p) for p in ("test", "quick", "full")} == {7065}
    assert generator_size("7t-m2", "full") == 458_385  # Table 3's count
    assert generator_size("7t-m2", "quick") < generator_size("7t-m2", "full") // 8


@pytest.mark.parametrize("name", ["7t-m1", "7t-m2", "7t-m3", "7t-m4", "7t-m5", "7t-m9"])
def test_the_7t_generators_start_at_their_input(name):
    method = build(name, factors=(1, 1, 1), profile="test")
    method.train_mode(False)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(method.forward(x), x)
