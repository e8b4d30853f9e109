"""The five papers the workbench reproduces, cited by first author and year.

Code, tables and docs cite a paper through `cite(key)`; the keys name the paper's method
(`"hlh-gan"`), never a file number. Each entry records the evidence for its author and year.
Where neither the full text nor a search established them, `first_author` and `year` are
None and `cite` says so ("HLH-GAN paper (authors not established)") instead of guessing.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Paper:
    key: str
    first_author: str | None  # None: not established (see `evidence`)
    year: int | None  # year of first public version; None: not established
    title: str
    methods: str  # the methods the workbench takes from it
    label: str = ""  # short name, used when the authors are not established
    evidence: str = ""  # where the author and year come from

    @property
    def citation(self) -> str:
        if self.first_author and self.year:
            return f"{self.first_author} et al. {self.year}"
        return f"{self.label or self.key} paper (authors not established)"


PAPERS: dict[str, Paper] = {
    paper.key: paper
    for paper in (
        Paper("hlh-gan", None, None,
              # Authors NOT established: the full text we hold starts at the abstract (no author
              # list); searches for its title/abstract phrases found nothing. IJCAI-style
              # citations; its newest reference is 2018, so it is 2018 or later.
              "HLH-GAN: joint super-resolution and inpainting of brain MRI (title as we hold it)",
              "H-L GAN (learned degradation) + L-H GAN (joint SR and inpainting)", label="HLH-GAN",
              evidence="not established: no author list in the text; newest reference 2018"),
        Paper("dcgan-srgan", "Hayrapetyan", 2017,
              "Combination of single image super resolution and digital inpainting algorithms based on GANs "
              "for robust image completion", "DCGAN latent-space inpainting + SRGAN", label="DCGAN + SRGAN",
              evidence="author list in the full text (S. Hayrapetyan, G. Karapetyan, V. Voronin, H. Sarukhanyan); "
                       "Serbian Journal of Electrical Engineering 14(3), Oct. 2017, pp. 379-386 (journal copy "
                       "found by search); its newest reference is June 2017"),
        Paper("udean", "Liu", 2022, "Unsupervised representation learning for 3D MRI super resolution with "
              "degradation adaptation", "UDEAN", label="UDEAN",
              evidence="author list in the full text (Jianan Liu and Hao Li co-first authors); arXiv:2205.06891 "
                       "(first posted May 2022). The text we hold is a later revision (cites 2023 work); a "
                       "journal version is titled '... 3-D Magnetic Resonance Imaging Superresolution ...'"),
        Paper("gan-circle", "Lyu", 2018, "Super-resolution MRI through deep learning", "GAN-CPCE, GAN-CIRCLE",
              label="GAN-CPCE / GAN-CIRCLE",
              evidence="the text has no author list; it calls GAN-CPCE and GAN-CIRCLE 'our' work (Ge Wang's "
                       "group). The title is arXiv:1810.06776 (Oct. 2018), cited beside Lyu, Shan & Wang's "
                       "follow-up arXiv:1907.03063; first author Lyu (Qing) from that pairing, not from an "
                       "author list we have read"),
        Paper("7t-9.4t", None, None,
              # Authors NOT established: the text has no author list and no dated reference list;
              # searches for its title and abstract found nothing. The earlier guess 'Eldaly 2021'
              # is unsupported (an Eldaly works on image quality transfer at UCL, not this paper).
              "7T to 9.4T MRI synthesis with deep learning (title as we hold it)",
              "RFSR, FCN, DCSRN, DCGAN, U-Net GAN, pix2pix", label="7T-to-9.4T",
              evidence="not established: no author list or dated references in the text"),
    )
}


def cite(key: str) -> str:
    """'First-author et al. year' for a paper key ('<label> paper (authors not established)' when
    they could not be verified); a `KeyError` lists the keys."""
    try:
        return PAPERS[key].citation
    except KeyError:
        raise KeyError(f"unknown paper {key!r}; choose one of {sorted(PAPERS)}") from None
