"""Studies: named experiments that reproduce a paper's table (or the workbench's own
comparison), with the paper's reported numbers attached so each table puts them beside ours.

A study is scenarios x contrasts x pairings x methods x seeds. The report is a list of
studies (`sr-lib report --study NAME`); each method issue adds its paper's study here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd

from sr_lib.degrade import scenario_scales
from sr_lib.experiment import RunConfig
from sr_lib.papers import cite
from sr_lib.methods import method_class


@dataclasses.dataclass(frozen=True)
class PaperResult:
    """One number a paper reports, in the workbench's names. `note` says how the paper's
    setting differs from ours (data, scale, metric convention)."""

    method: str
    scenario: str
    contrast: str
    psnr: float | None
    ssim: float | None
    source: str
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    title: str
    description: str
    scenarios: tuple[str, ...]
    contrasts: tuple[str, ...]
    methods: tuple[str, ...]
    pairings: tuple[str, ...] = ("paired",)
    seeds: int = 3
    dims: int | None = None
    paper_results: tuple[PaperResult, ...] = ()
    detail: tuple[str, ...] = ()  # methods whose run of the first scenario gets a 10_train notebook
    analyses: tuple[str, ...] = ()  # extra tables from the trained runs: "seams" (`sr_lib.seams`)
    ablation: bool = False  # shown by notebooks/30_ablations too

    def configs(self, *, profile: str, dataset: str = "phantom", root: str | None = None, scale: int = 2,
                seeds: int | None = None) -> list[RunConfig]:
        """Every run of the study; a fixed-scale scenario (k-space) runs at its own scale. A
        method that learns nothing (input, interpolation) runs once: its seeds would agree."""
        configs = []
        for scenario in self.scenarios:
            scales = scenario_scales(scenario)
            own_scale = scale if scale in scales else scales[0]
            for contrast in self.contrasts:
                for pairing in self.pairings:
                    for method in self.methods:
                        n_seeds = (seeds or self.seeds) if method_class(method).learned else 1
                        for seed in range(n_seeds):
                            configs.append(RunConfig(method=method, scenario=scenario, contrast=contrast,
                                                     scale=own_scale, pairing=pairing, profile=profile, seed=seed,
                                                     dataset=dataset, root=root, dims=self.dims))
        return configs

    def paper_table(self) -> pd.DataFrame:
        """The paper's numbers as rows (study, scenario, contrast, method, metric, value, source, note)."""
        rows = []
        for r in self.paper_results:
            for metric in ("psnr", "ssim"):
                value = getattr(r, metric)
                if value is not None:
                    rows.append({"study": self.name, "scenario": r.scenario, "contrast": r.contrast, "method": r.method,
                                 "metric": metric, "value": value, "source": r.source, "note": r.note})
        return pd.DataFrame(rows, columns=["study", "scenario", "contrast", "method", "metric", "value", "source", "note"])


_XU_TABLE1 = f"{cite('hlh-gan')}, Table 1"
_XU_NOTE = "IXI T2, 2D slices; the paper's blur and scale for SR-B are not stated beside the table"

_LYU = f"{cite('gan-circle')}, Table 1"
_LYU_NOTE = "IXI T2 256x256 slices, central 25% of k-space; PSNR/SSIM per 2D slice (compare the slices convention)"
_7T2 = f"{cite('7t-9.4t')}, Table 2"
_7T3 = f"{cite('7t-9.4t')}, Table 3"
_7T_NOTE = ("7T -> 9.4T ex-vivo synthesis with its own PSNR scale (56-68 dB) and SSIM (0.07-0.59): compare the "
            "order of methods, not the levels")
# The 7T paper's CNNs (Table 2) and GANs (Table 3): PSNR, SSIM.
_7T_CNNS = {"fcn1": (57.01, 0.116), "fcn2": (56.47, 0.0679), "dcsrn-l1": (65.51, 0.358), "dcsrn-l2": (62.83, 0.254),
            "dcsrn-perceptual": (64.1, 0.211)}
_7T_GANS = {f"7t-m{i}": v for i, v in enumerate(
    [(65.31, 0.255), (67.44, 0.578), (67.06, 0.588), (65.67, 0.358), (65.90, 0.500), (66.17, 0.498), (67.55, 0.593),
     (66.27, 0.508), (65.87, 0.544), (63.18, 0.237), (61.07, 0.443)], start=1)}


def _7t_results(numbers: dict[str, tuple[float, float]], source: str) -> tuple[PaperResult, ...]:
    return tuple(PaperResult(m, "kspace-2x", "T2", p, s, source, _7T_NOTE) for m, (p, s) in numbers.items())


_7T_SCENARIO_WHY = (
    "The paper synthesises 9.4T-like images from 7T ones on the same grid; we use the same-grid k-space "
    "truncation (kspace-2x), the one same-grid scenario with a real loss of resolution, which the "
    "GAN-CPCE/GAN-CIRCLE study shares, so the CNN runs serve both."
)

STUDIES: dict[str, Study] = {
    "baselines": Study(
        name="baselines",
        title="Baselines under one protocol",
        description=(
            "The workbench's reference comparison: the degraded input or interpolation, SRCNN, SRResNet and SRGAN "
            f"on zero-filled k-space truncation ({cite('gan-circle')}) and blur + bicubic downsampling (SR-B, "
            f"{cite('hlh-gan')}), T2, three training seeds. {cite('hlh-gan')} report bicubic, SRCNN and SRGAN on "
            "IXI SR-B; their numbers stand beside ours."
        ),
        scenarios=("kspace-2x", "SR-B"),
        contrasts=("T2",),
        methods=("input", "nearest", "bicubic", "srcnn", "srresnet", "srgan"),
        seeds=2,
        paper_results=(
            PaperResult("bicubic", "SR-B", "T2", 29.92, 0.8617, _XU_TABLE1, _XU_NOTE),
            PaperResult("srcnn", "SR-B", "T2", 32.52, 0.8996, _XU_TABLE1, _XU_NOTE),
            PaperResult("srgan", "SR-B", "T2", 32.97, 0.9001, _XU_TABLE1, _XU_NOTE),
        ),
        detail=("srresnet",),
    ),
    "cpce-circle": Study(
        name="cpce-circle",
        title="GAN-CPCE against GAN-CIRCLE on 2x k-space truncation",
        description=(
            f"{cite('gan-circle')}: 2x MRI SR from the central 25% of k-space, zero-filled on the same grid, T2. "
            "Their finding: GAN-CPCE beats GAN-CIRCLE (33.20 vs 32.30 dB). The zero-filled input, SRCNN and "
            "SRResNet (the baselines study's runs) stand beside them as context."
        ),
        scenarios=("kspace-2x",),
        contrasts=("T2",),
        methods=("input", "srcnn", "srresnet", "gan-cpce", "gan-circle"),
        seeds=2,
        paper_results=(
            PaperResult("gan-cpce", "kspace-2x", "T2", 33.20, 0.9563, _LYU, _LYU_NOTE),
            PaperResult("gan-circle", "kspace-2x", "T2", 32.30, 0.9465, _LYU, _LYU_NOTE),
        ),
    ),
    "7t-models": Study(
        name="7t-models",
        title="The 7T->9.4T paper's CNNs and GAN models 1-11",
        description=(
            f"{cite('7t-9.4t')}: random-forest SR, FCN 1 and 2, DCSRN (L1), a U-Net, and the GAN models 1-11 "
            "(DCGAN, U-Net GAN and pix2pix variants). " + _7T_SCENARIO_WHY + " Findings to check: GANs beat CNNs "
            "on SSIM; PatchGAN (pix2pix, models 9-11) underperforms."
        ),
        scenarios=("kspace-2x",),
        contrasts=("T2",),
        methods=("input", "rfsr", "fcn1", "fcn2", "dcsrn-l1", "unet") + tuple(f"7t-m{i}" for i in range(1, 12)),
        seeds=2,
        paper_results=(_7t_results({k: v for k, v in _7T_CNNS.items() if k in ("fcn1", "fcn2", "dcsrn-l1")}, _7T2)
                       + _7t_results(_7T_GANS, _7T3)),
    ),
    "7t-dcsrn-losses": Study(
        name="7t-dcsrn-losses",
        title="DCSRN trained with L1, L2 or perceptual loss",
        description=(
            f"{cite('7t-9.4t')}, Table 2: the same DCSRN trained with each loss; their finding is that L1 beats L2 "
            "and perceptual. " + _7T_SCENARIO_WHY
        ),
        scenarios=("kspace-2x",),
        contrasts=("T2",),
        methods=("input", "dcsrn-l1", "dcsrn-l2", "dcsrn-perceptual"),
        seeds=2,
        paper_results=_7t_results({k: v for k, v in _7T_CNNS.items() if k.startswith("dcsrn")}, _7T2),
        ablation=True,
    ),
    "7t-seams": Study(
        name="7t-seams",
        title="Does the gradient difference loss cause stitching seams?",
        description=(
            f"{cite('7t-9.4t')} stitch dense patches and report that the gradient difference loss leaves visible "
            "seams. The same U-Net GAN is trained without and with that loss; each run's test subjects are then "
            "predicted stitched and with whole slices, and the error on the lines where patches meet is compared "
            "with the error elsewhere (the seams table). " + _7T_SCENARIO_WHY
        ),
        scenarios=("kspace-2x",),
        contrasts=("T2",),
        methods=("input", "7t-m5", "7t-m7"),
        seeds=2,
        analyses=("seams",),
        ablation=True,
    ),
}


def get_study(name: str) -> Study:
    try:
        return STUDIES[name]
    except KeyError:
        raise KeyError(f"unknown study {name!r}; choose one of {sorted(STUDIES)}") from None


def get_studies(names: Sequence[str] | None) -> list[Study]:
    """The named studies (all when `names` is empty)."""
    return [get_study(n) for n in (names or list(STUDIES))]
