"""Profiles: the one source of truth for sizes (data, patches, nets, training length).

`test` runs in seconds (CI, nbval), `quick` in minutes on 2 CPU cores (`make report`),
`full` is paper-sized and wants a GPU. Notebooks and the CLI take a profile name; nothing
else in the workbench hard-codes a size.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    # data: embedded phantom brains
    voxel_size_mm: float  # isotropic phantom resolution (MNI152 template resampled)
    n_subjects: int
    n_val: int  # subjects held out for validation
    n_test: int  # subjects held out for testing (the rest train)
    # training
    patch_size: int  # HR patch edge (pixels) for 2D training
    patch_size_3d: int  # HR patch edge (voxels) for 3D training
    batch_size: int
    steps: int  # cap on optimiser steps for every learned method
    patience: int  # validations without a 0.01 dB gain before early stopping (0 = train to the cap)
    val_every: int  # validation PSNR/SSIM every N steps
    checkpoint_every: int
    lr: float  # Adam learning rate (1e-4 in all five papers)
    # network size
    features: int  # feature maps of residual / GAN generators
    num_blocks: int  # residual blocks of SRResNet-like generators
    feature_net_steps: int  # steps to train the MRI feature net for perceptual losses
    # inference
    infer_batch: int  # slices (2D) or patches (3D) per forward pass
    infer_patch_3d: int  # LR edge (voxels) of a 3D sliding-window inference patch

    @property
    def n_train(self) -> int:
        return self.n_subjects - self.n_val - self.n_test

    @property
    def paper_sized(self) -> bool:
        """Whether methods build their papers' widths (the `full` profile, width 64); below it
        each method's `profile_defaults` shrinks its nets so that the CPU profiles fit."""
        return self.features >= 64


PROFILES: dict[str, Profile] = {
    "test": Profile(
        name="test", voxel_size_mm=6.0, n_subjects=6, n_val=1, n_test=2,
        patch_size=16, patch_size_3d=12, batch_size=4, steps=12, patience=0, val_every=6,
        checkpoint_every=6, lr=1e-3, features=8, num_blocks=1, feature_net_steps=10,
        infer_batch=8, infer_patch_3d=24,
    ),
    "quick": Profile(
        name="quick", voxel_size_mm=2.0, n_subjects=12, n_val=1, n_test=4,
        patch_size=32, patch_size_3d=16, batch_size=16, steps=600, patience=3, val_every=100,
        checkpoint_every=200, lr=3e-4, features=32, num_blocks=4, feature_net_steps=300,
        infer_batch=32, infer_patch_3d=32,
    ),
    # Sized for one H200 (141 GB): the 1 mm grid of IXI-like brains, SRGAN's 96 x 96 HR crops
    # in batches of 16 (Ledig et al. 2017), 64^3 volumes for 3D nets, paper widths (64
    # features, 16 residual blocks), 1e-4 (all five papers). 100k steps is the cap, not the
    # length: validation every 2000 steps stops a run after 5 validations without a 0.01 dB
    # gain. A 16-block SRResNet step at 96 x 96 is ~1.1 TFLOP (fwd + bwd), so 100k steps take
    # ~8 min at 25% of the H200's bf16 peak; `sr-lib bench --profile full` measures it.
    "full": Profile(
        name="full", voxel_size_mm=1.0, n_subjects=40, n_val=4, n_test=8,
        patch_size=96, patch_size_3d=64, batch_size=16, steps=100_000, patience=5, val_every=2000,
        checkpoint_every=2000, lr=1e-4, features=64, num_blocks=16, feature_net_steps=5000,
        infer_batch=64, infer_patch_3d=64,
    ),
}


def get_profile(name: str | Profile) -> Profile:
    """The profile called `name`; a `KeyError` lists the valid names."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
