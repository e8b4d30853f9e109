"""Feature networks for perceptual losses, offline.

If the user names a local torchvision VGG-16 or VGG-19 state dict (argument, or
`$SR_LIB_VGG16` / `$SR_LIB_VGG19`), it is used. Otherwise the workbench trains a small `MRIFeatureNet` as a denoising
autoencoder on the run's training HR patches and caches it by a fingerprint of that data;
nothing is ever downloaded. The returned description says which was used, and the run
config and the report carry it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from sr_lib.atomic import atomic_path
from sr_lib.nets.features import MRIFeatureNet, VGGFeatures
from sr_lib.paths import cache_dir
from sr_lib.profiles import Profile

FEATURE_NET_VERSION = 1
VGG_ENV = {"vgg16": "SR_LIB_VGG16", "vgg19": "SR_LIB_VGG19"}


def vgg_weights_path(explicit: str | None = None, variant: str = "vgg19") -> str | None:
    """The VGG weights file to use: the argument, else `$SR_LIB_VGG16` / `$SR_LIB_VGG19`, else None."""
    env = VGG_ENV[variant]
    path = explicit or os.environ.get(env) or None
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"{path}: {variant} weights file not found (from {'argument' if explicit else env})")
    return path


def feature_extractor(
    *,
    spatial_dims: int,
    profile: Profile,
    sampler: Any,
    seed: int = 0,
    vgg_weights: str | None = None,
    vgg_layers: tuple[str, ...] = ("relu5_4",),
    vgg_variant: str = "vgg19",
    device: torch.device | str = "cpu",
    progress: bool | None = None,
) -> tuple[nn.Module, str]:
    """A frozen feature net (image -> dict of feature maps) and a one-line description: VGG
    (`vgg_variant`, `vgg_layers`) when a weights file is given, else the MRI feature net."""
    path = vgg_weights_path(vgg_weights, vgg_variant)
    if path is not None:
        if spatial_dims != 2:
            raise ValueError("VGG features are 2D; a 3D method needs the MRI feature net (no VGG weights)")
        net = VGGFeatures(vgg_layers, variant=vgg_variant).load_torchvision(path).to(device).eval()
        return net, f"{vgg_variant} {'+'.join(vgg_layers)} from {Path(path).name}"
    net, key = train_mri_feature_net(spatial_dims=spatial_dims, profile=profile, sampler=sampler, seed=seed, device=device, progress=progress)
    return net, f"MRI feature net (denoising autoencoder trained by the workbench on the training brains, {key})"


def _fingerprint(sampler: Any, spatial_dims: int, profile: Profile, seed: int) -> str:
    probe = sampler.sample(4, torch.Generator().manual_seed(12345))["hr"].detach().cpu().float().numpy()
    digest = hashlib.sha1(probe.tobytes())
    digest.update(json.dumps([FEATURE_NET_VERSION, spatial_dims, profile.name, profile.feature_net_steps, seed]).encode())
    return digest.hexdigest()[:12]


def train_mri_feature_net(
    *, spatial_dims: int, profile: Profile, sampler: Any, seed: int, device: torch.device | str = "cpu",
    progress: bool | None = None,
) -> tuple[MRIFeatureNet, str]:
    """Train (or load from the cache) an `MRIFeatureNet` on HR patches from `sampler`.

    Objective: reconstruct the clean HR patch from a copy with Gaussian noise (sigma 0.05),
    L1, Adam 1e-3, `profile.feature_net_steps` steps of `profile.batch_size` patches.
    `progress` None shows the bar on a terminal only, and not when `$TQDM_DISABLE` is set (as
    the report sets it for its workers, whose steps its live line shows).
    """
    key = _fingerprint(sampler, spatial_dims, profile, seed)
    path = cache_dir() / "feature_nets" / f"mri-{spatial_dims}d-{key}.pt"
    net = MRIFeatureNet(spatial_dims=spatial_dims)
    if path.exists():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        generator = torch.Generator().manual_seed(seed + 1)
        noise_gen = torch.Generator().manual_seed(seed + 2)
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
        net.to(device).train()
        hide = (True if os.environ.get("TQDM_DISABLE") else None) if progress is None else not progress
        for _ in tqdm(range(profile.feature_net_steps), desc="MRI feature net", leave=False, disable=hide):
            hr = sampler.sample(profile.batch_size, generator)["hr"].float().cpu()
            noisy = hr + 0.05 * torch.randn(hr.shape, generator=noise_gen)
            loss = (net.reconstruct(noisy.to(device)) - hr.to(device)).abs().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        with atomic_path(path) as tmp:
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, tmp)
    net.to(device).eval().requires_grad_(False)
    return net, key
