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
        seeds=3,
        paper_results=(
            PaperResult("bicubic", "SR-B", "T2", 29.92, 0.8617, _XU_TABLE1, _XU_NOTE),
            PaperResult("srcnn", "SR-B", "T2", 32.52, 0.8996, _XU_TABLE1, _XU_NOTE),
            PaperResult("srgan", "SR-B", "T2", 32.97, 0.9001, _XU_TABLE1, _XU_NOTE),
        ),
        detail=("srresnet",),
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
