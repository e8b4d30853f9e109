"""Overview tables and figures (notebooks 00 and 01): tables, k-space display, figures, and the
scores of the degraded input against HR."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sr_lib import overview as ov  # noqa: E402
from sr_lib.data import Split, folder_dataset, split_subjects  # noqa: E402
from sr_lib.degrade import degrade_volume, get_scenario, kspace_truncate  # noqa: E402
from sr_lib.io import Volume, save_volume  # noqa: E402
from sr_lib.methods import build  # noqa: E402
from sr_lib.metrics import evaluate, foreground_mask  # noqa: E402

SHAPE = (20, 24, 12)  # even (small grids need whole factors), not cubic, z >= the SSIM window
VOXEL = 2.0


def head(seed: int, shape: tuple[int, int, int] = SHAPE) -> Volume:
    """A normalised synthetic 'head': a textured ellipsoid on a dark background, 2 mm voxels."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = sum((g / r) ** 2 for g, r in zip(grid, (0.8, 0.85, 0.9))) < 1
    data = np.where(inside, 0.6 + 0.3 * rng.random(shape), 0.02 * rng.random(shape)).astype(np.float32)
    return Volume(data=data, affine=np.diag([VOXEL, VOXEL, VOXEL, 1.0]), subject=f"sub-{seed}", contrast="T2")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three subjects with T1/T2/PD, except sub-2 without PD."""
    root: Path = tmp_path_factory.mktemp("overview")
    for i in range(3):
        for j, contrast in enumerate(("T1", "T2", "PD")):
            if (i, contrast) != (2, "PD"):
                save_volume(head(10 * i + j), root / f"sub-{i}_{contrast}.nii.gz")
    return folder_dataset(root)


# ----------------------------------------------------------------------------- tables


def test_dataset_overview_has_a_row_per_subject_and_a_column_per_contrast(dataset):
    table = ov.dataset_overview(dataset)
    assert list(table.index) == ["sub-0", "sub-1", "sub-2"]
    assert list(table.columns) == ["T1", "T2", "PD"]  # conventional order, not sorted
    assert table.loc["sub-0", "T2"] == "20×24×12 @ 2×2×2 mm"
    assert table.loc["sub-2", "PD"] == "—"


def test_split_table_labels_every_subject_once():
    subjects = [f"s{i:02d}" for i in range(9)]
    split = split_subjects(subjects, n_val=2, n_test=3, seed=4)
    table = ov.split_table(split)
    assert list(table.columns) == ["subject", "set"]
    assert sorted(table["subject"]) == subjects and table["subject"].is_unique
    assert table["set"].value_counts().to_dict() == {"train": 4, "test": 3, "val": 2}
    labels = dict(zip(table["subject"], table["set"]))
    assert all(labels[s] == "test" for s in split.test) and all(labels[s] == "val" for s in split.val)


def test_split_table_refuses_a_subject_in_two_sets():
    with pytest.raises(ValueError, match="more than one set: a"):
        ov.split_table(Split(train=("a", "b"), val=("a",), test=("c",)))


def test_scenario_table_names_paper_grid_and_interpolation():
    table = ov.scenario_table(["SR-B", "kspace-2x", "kspace-2x2x2"], scale=2)
    assert list(table["scenario"]) == ["SR-B", "kspace-2x", "kspace-2x2x2"]
    assert list(table["interpolation"]) == ["bicubic", "none (same grid)", "tricubic"]
    assert list(table["factors"]) == ["2×2×1", "2×2×1", "2×2×2"]
    assert table["paper"].str.contains(r"et al\. \d{4}|authors not established").all() and table["description"].str.len().gt(10).all()
    with pytest.raises(KeyError, match="unknown scenario"):
        ov.scenario_table(["nope"], scale=2)
    with pytest.raises(ValueError, match="fixed scale 2"):
        ov.scenario_table(["kspace-2x"], scale=4)


# ----------------------------------------------------------------------------- k-space


@pytest.mark.parametrize("shape", [(16, 16), (15, 22), (7, 9)])
def test_kspace_magnitude_peaks_at_the_centre_with_the_mean(shape):
    image = np.random.default_rng(0).random(shape) + 0.5  # positive: the DC term dominates
    k = ov.kspace_magnitude(image)
    assert k.shape == shape
    assert np.unravel_index(np.argmax(k), shape) == (shape[0] // 2, shape[1] // 2)
    assert k[shape[0] // 2, shape[1] // 2] == pytest.approx(np.log10(image.mean()), abs=1e-5)


def test_kspace_magnitude_of_a_cropped_spectrum_is_the_central_part_of_the_full_one():
    image = np.random.default_rng(1).random((16, 12))
    small = kspace_truncate(image, (2, 2), grid="small", return_complex=True)
    full, cropped = ov.kspace_magnitude(image), ov.kspace_magnitude(small)
    np.testing.assert_allclose(cropped, full[4:12, 3:9], atol=1e-4)


def test_kspace_magnitude_refuses_other_shapes():
    for bad in (np.zeros(5), np.zeros((3, 3, 3)), np.zeros((0, 4))):
        with pytest.raises(ValueError, match="2D slice"):
            ov.kspace_magnitude(bad)


# ----------------------------------------------------------------------------- scores


def test_degradation_scores_of_a_band_limited_volume_are_near_perfect():
    """Identity-like: k-space-2x keeps the central 25% of in-plane k-space, and this volume
    has nothing outside it, so the 'degraded' input is the HR volume."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    smooth = 0.5 + 0.2 * np.cos(2 * np.pi * 2 * x / SHAPE[0]) + 0.2 * np.sin(2 * np.pi * 3 * y / SHAPE[1])
    smooth = smooth * (1 + 0.1 * np.cos(2 * np.pi * z / SHAPE[2]))
    hr = Volume(data=smooth.astype(np.float32), affine=np.eye(4))
    scores = ov.degradation_scores([hr], ["kspace-2x"], seed=0, scale=2)
    row = scores.iloc[0]
    assert row["psnr_mean"] > 80 and row["psnr_fg_mean"] > 80
    assert row["ssim_mean"] == pytest.approx(1.0, abs=1e-6) and row["ssim_fg_mean"] == pytest.approx(1.0, abs=1e-6)
    assert row["psnr_std"] == 0.0  # one subject


def test_degradation_scores_table_one_row_per_scenario():
    hrs = [head(1), head(2), head(3)]
    scores = ov.degradation_scores(hrs, ["SR-N-B", "SRI", "kspace-2x2x2"], seed=0, scale=2)
    expected = ["scenario", "interpolation", "n_subjects"] + [
        f"{m}_{k}" for m in ("psnr", "ssim", "psnr_fg", "ssim_fg") for k in ("mean", "std")]
    assert list(scores.columns) == expected
    assert list(scores["scenario"]) == ["SR-N-B", "SRI", "kspace-2x2x2"]
    assert list(scores["interpolation"]) == ["bicubic", "bicubic", "tricubic"]
    assert (scores["n_subjects"] == 3).all()
    numbers = scores.iloc[:, 3:]
    assert np.isfinite(numbers.to_numpy()).all() and (scores.filter(like="_std") > 0).all().all()
    assert scores["ssim_mean"].between(0, 1, inclusive="neither").all()
    # blur + noise + a hole is a harder input than plain bicubic downsampling
    assert scores.loc[1, "psnr_mean"] < scores.loc[0, "psnr_mean"]
    formatted = ov.format_scores(scores)
    assert list(formatted.index) == ["SR-N-B", "SRI", "kspace-2x2x2"]
    assert formatted.loc["SRI", "PSNR (dB)"] == f"{scores.loc[1, 'psnr_mean']:.2f} ± {scores.loc[1, 'psnr_std']:.2f}"
    assert formatted.loc["SRI", "SSIM fg"].count("±") == 1


def test_degradation_scores_follow_the_runs_seeding_and_baseline():
    """Subject i degraded with default_rng([seed, 3, i]) and put back with the registered
    interpolation method, as `runs.prepare_data` and a 'bicubic' run do."""
    hrs = [head(5), head(6)]
    scenario = get_scenario("SRI", scale=2)
    expected = []
    for i, hr in enumerate(hrs):
        lr, _, _ = degrade_volume(hr, scenario, np.random.default_rng([7, 3, i]))
        pred = build("bicubic", factors=(2, 2, 1), profile="test").predict_volume(lr.data)
        expected.append(evaluate(pred, hr.data, mask=foreground_mask(hr.data))["psnr"])
    scores = ov.degradation_scores(hrs, ["SRI"], seed=7, scale=2)
    assert scores.loc[0, "psnr_mean"] == pytest.approx(np.mean(expected), rel=1e-9)
    assert scores.loc[0, "psnr_std"] == pytest.approx(np.std(expected, ddof=1), rel=1e-9)
    other_seed = ov.degradation_scores(hrs, ["SRI"], seed=8, scale=2)
    assert other_seed.loc[0, "psnr_mean"] != scores.loc[0, "psnr_mean"]


def test_interpolate_to_hr_lands_on_the_hr_grid():
    hr = head(4)
    for name in ("SR-B", "kspace-2x", "kspace-2x2x2"):
        lr, _, _ = ov.degrade_subject(hr, name, seed=0, scale=2)
        assert ov.interpolate_to_hr(lr.data, name, scale=2).shape == hr.shape


def test_comparison_volumes_for_the_viewer():
    hr = head(2)
    small = ov.comparison_volumes(hr, "SRI", seed=0, scale=2)
    assert list(small) == ["HR", "LR (SRI)", "LR → HR grid (bicubic)", "hole mask"]
    assert small["LR (SRI)"].shape == (10, 12, 12) and small["hole mask"].shape == (10, 12, 12)
    assert small["LR → HR grid (bicubic)"].shape == hr.shape
    np.testing.assert_allclose(small["LR (SRI)"].voxel_size, (4.0, 4.0, 2.0))
    same = ov.comparison_volumes(hr, "kspace-2x", seed=0, scale=2)
    assert list(same) == ["HR", "LR (kspace-2x)"]  # already on the HR grid: nothing to interpolate


def test_degradation_scores_bad_arguments():
    with pytest.raises(ValueError, match="at least one HR volume"):
        ov.degradation_scores([], ["SR-B"], seed=0, scale=2)
    with pytest.raises(KeyError, match="unknown scenario"):
        ov.degradation_scores([head(0)], ["SR-Q"], seed=0, scale=2)


# ----------------------------------------------------------------------------- figures


def image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_scenario_gallery_has_five_panels_per_scenario():
    fig = ov.scenario_gallery(head(0), ["SR-N-B", "SRI", "kspace-2x2x2"], seed=0, scale=2)
    assert isinstance(fig, Figure)
    axes = image_axes(fig)
    assert len(axes) == 3 * 5
    assert len(fig.axes) == 3 * 5 + 2  # two colour bars: grey scale and k-space
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert texts.count("no mask") == 2  # SRI has a hole mask, the others none
    assert axes[1 * 5 + 2].get_images()  # SRI's mask is drawn
    # HR and LR on one grey scale; HR and LR k-space on one colour scale and one frequency range
    assert {im.get_clim() for ax in axes[:2] for im in ax.get_images()} == {(0.0, 1.0)}
    k_hr, k_lr = axes[3].get_images()[0], axes[4].get_images()[0]
    assert k_hr.get_clim() == k_lr.get_clim()
    assert axes[3].get_xlim() == axes[4].get_xlim() and axes[3].get_ylim() == axes[4].get_ylim()
    # the LR is drawn over the same field of view (mm) as the HR
    assert axes[0].get_images()[0].get_extent() == axes[1].get_images()[0].get_extent()


def test_scenario_gallery_bad_arguments():
    with pytest.raises(ValueError, match="at least one scenario"):
        ov.scenario_gallery(head(0), [], seed=0, scale=2)
    with pytest.raises(ValueError, match="index 99"):
        ov.scenario_gallery(head(0), ["SR-B"], seed=0, scale=2, index=99)


def test_contrast_montage_three_orientations_per_contrast(dataset):
    fig = ov.contrast_montage(dataset, "sub-0")
    axes = image_axes(fig)
    assert len(axes) == 9 and len(fig.axes) == 10
    assert [axes[i].get_ylabel() for i in (0, 3, 6)] == ["T1", "T2", "PD"]
    assert len(image_axes(ov.contrast_montage(dataset, "sub-2"))) == 6  # no PD
    with pytest.raises(KeyError, match="no subject"):
        ov.contrast_montage(dataset, "sub-9")


def test_subject_volumes_in_conventional_order(dataset):
    volumes = ov.subject_volumes(dataset, "sub-1")
    assert list(volumes) == ["T1", "T2", "PD"]
    assert all(v.intensity is not None and v.data.max() <= 1.0 for v in volumes.values())  # normalised
    assert list(ov.subject_volumes(dataset, "sub-1", contrasts=["PD", "T1"])) == ["T1", "PD"]


def test_intensity_histograms_one_panel_per_contrast_one_line_per_subject(dataset):
    fig = ov.intensity_histograms(dataset, ["sub-0", "sub-1"], ["PD", "T2"])
    assert [ax.get_title() for ax in fig.axes] == ["T2 (2 subjects)", "PD (2 subjects)"]
    assert all(len(ax.patches) == 2 for ax in fig.axes)
    with pytest.raises(ValueError, match="at least one subject"):
        ov.intensity_histograms(dataset, [], ["T2"])
