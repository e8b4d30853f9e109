"""The five papers the workbench reproduces, cited by first author and year.

Code, tables and docs cite a paper through `cite(key)`; the keys name the paper's method
(`"hlh-gan"`), never a file number.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Paper:
    key: str
    first_author: str
    year: int
    title: str
    methods: str  # the methods the workbench takes from it

    @property
    def citation(self) -> str:
        return f"{self.first_author} et al. {self.year}"


PAPERS: dict[str, Paper] = {
    paper.key: paper
    for paper in (
        Paper("hlh-gan", "Xu", 2021, "Joint super-resolution and inpainting of brain MRI with HLH-GAN",
              "H-L GAN (learned degradation) + L-H GAN (joint SR and inpainting)"),
        Paper("dcgan-srgan", "Hayrapetyan", 2016,
              "Combination of single image super resolution and digital inpainting algorithms based on GANs "
              "for robust image completion", "DCGAN latent-space inpainting + SRGAN"),
        Paper("udean", "Liu", 2022, "Unsupervised representation learning for 3D MRI super resolution with "
              "degradation adaptation", "UDEAN"),
        Paper("gan-circle", "Lyu", 2018, "Super-resolution MRI through deep learning", "GAN-CPCE, GAN-CIRCLE"),
        Paper("7t-9.4t", "Eldaly", 2021, "7T to 9.4T MRI synthesis with deep learning",
              "RFSR, FCN, DCSRN, DCGAN, U-Net GAN, pix2pix"),
    )
}


def cite(key: str) -> str:
    """'First-author et al. year' for a paper key; a `KeyError` lists the keys."""
    try:
        return PAPERS[key].citation
    except KeyError:
        raise KeyError(f"unknown paper {key!r}; choose one of {sorted(PAPERS)}") from None
