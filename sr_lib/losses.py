"""Losses as plain functions: a functional core, an optional element-wise weight, and the
mean over the weighted region (BasicSR's idea, which is what hole/valid-region inpainting
losses need). Tensors are (N, C, H, W) or (N, C, X, Y, Z).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of `values`, or its weighted mean sum(w * v) / sum(w) (weight broadcasts)."""
    if weight is None:
        return values.mean()
    weight = weight.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1e-8)


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, *, kind: str = "l1", weight: torch.Tensor | None = None) -> torch.Tensor:
    """L1 ('l1') or squared L2 ('mse') distance, optionally weighted per element."""
    if pred.shape != target.shape:
        raise ValueError(f"pixel_loss: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    if kind == "l1":
        return weighted_mean((pred - target).abs(), weight)
    if kind == "mse":
        return weighted_mean((pred - target).square(), weight)
    raise ValueError(f"unknown pixel loss {kind!r}; choose l1 or mse")


def adversarial_loss(logits: torch.Tensor, target_is_real: bool, *, kind: str = "bce") -> torch.Tensor:
    """GAN loss on raw discriminator logits (labels built here, as pix2pix's GANLoss).

    'bce': binary cross-entropy with logits (Goodfellow et al.; SRGAN, DCGAN, pix2pix);
    'lsgan': least squares to 1/0 (Mao et al.; UDEAN); 'wgan': -mean for real, +mean for
    fake (Arjovsky et al.; GAN-CPCE, GAN-CIRCLE with `gradient_penalty`).
    """
    if kind == "bce":
        target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
        return F.binary_cross_entropy_with_logits(logits, target)
    if kind == "lsgan":
        return (logits - (1.0 if target_is_real else 0.0)).square().mean()
    if kind == "wgan":
        return -logits.mean() if target_is_real else logits.mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; choose bce, lsgan or wgan")


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates (Gulrajani et al. 2017)."""
    alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


def feature_loss(
    features: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    kind: str = "l1",
) -> torch.Tensor:
    """Perceptual/content loss: distance between feature maps, summed over the net's layers
    (SRGAN's VGG loss with kind='mse'; the 7T->9.4T paper's L1 sum over VGG16 layers)."""
    with torch.no_grad():
        target_features = features(target)
    pred_features = features(pred)
    return sum(pixel_loss(pred_features[name], target_features[name], kind=kind) for name in pred_features)


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) -> (N, C, C) Gram matrix normalised by the number of elements per map."""
    flat = x.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def texture_loss(
    features: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], pred: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Gram-matrix texture loss (HLH-GAN Eq. 7, after Gatys et al.), summed over layers."""
    with torch.no_grad():
        target_grams = {k: gram_matrix(v) for k, v in features(target).items()}
    return sum(pixel_loss(gram_matrix(v), target_grams[k], kind="mse") for k, v in features(pred).items())


def _finite_differences(x: torch.Tensor) -> list[torch.Tensor]:
    return [torch.diff(x, dim=d) for d in range(2, x.ndim)]


def gradient_difference_loss(pred: torch.Tensor, target: torch.Tensor, *, alpha: float = 2.0) -> torch.Tensor:
    """Gradient difference loss (Mathieu et al. 2016): mean over axes of
    | |d pred| - |d target| |^alpha, with d the forward difference. alpha = 2 is the 7T->9.4T
    paper's Eq. 4 (squared differences of the [-1, 1] and [1, -1]^T filter responses); we take
    means where it sums, so the weight does not depend on the patch size."""
    terms = [
        (dp.abs() - dt.abs()).abs().pow(alpha).mean()
        for dp, dt in zip(_finite_differences(pred), _finite_differences(target))
    ]
    return sum(terms) / len(terms)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean absolute finite difference, summed over axes
    (GAN-CIRCLE's joint sparsifying-transform term)."""
    return sum(d.abs().mean() for d in _finite_differences(x))


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM (Gaussian window, the metric's own definition and constants, data
    range 1), differentiable; 2D or 3D batches (UDEAN's SSIM loss, the 7T paper's metric)."""
    from sr_lib.metrics import _ssim_map  # the metric's map, so the loss optimises what is reported

    n, c = pred.shape[:2]
    flat = (t.reshape(n * c, *t.shape[2:]) for t in (pred, target))
    return 1.0 - _ssim_map(*flat, 1.0).mean()


RECONSTRUCTION_TERMS = ("l1", "l2", "ssim", "gradient", "perceptual", "texture", "tv")


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: Mapping[str, float],
    *,
    features: Callable[[torch.Tensor], Mapping[str, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum of the non-adversarial losses every paired method can use, and each
    term's value (for the log). `weights` maps a name in `RECONSTRUCTION_TERMS` to its weight;
    zero weights are skipped. 'l2' is the mean squared error, 'gradient' the gradient
    difference loss (alpha 1), 'perceptual' the L1 feature distance summed over the feature
    net's layers (the 7T paper's form), 'texture' the Gram loss, 'tv' the total variation
    of the prediction. 'perceptual' and 'texture' need `features`."""
    unknown = sorted(set(weights) - set(RECONSTRUCTION_TERMS))
    if unknown:
        raise ValueError(f"unknown loss term(s) {', '.join(unknown)}; choose from {', '.join(RECONSTRUCTION_TERMS)}")
    compute: dict[str, Callable[[], torch.Tensor]] = {
        "l1": lambda: pixel_loss(pred, target, kind="l1"),
        "l2": lambda: pixel_loss(pred, target, kind="mse"),
        "ssim": lambda: ssim_loss(pred, target),
        "gradient": lambda: gradient_difference_loss(pred, target),
        "perceptual": lambda: feature_loss(features, pred, target, kind="l1"),
        "texture": lambda: texture_loss(features, pred, target),
        "tv": lambda: total_variation(pred),
    }
    total = pred.new_zeros(())
    values: dict[str, float] = {}
    for name, weight in weights.items():
        if not weight:
            continue
        if name in ("perceptual", "texture") and features is None:
            raise ValueError(f"the {name} loss needs a feature net")
        term = compute[name]()
        total = total + weight * term
        values[name] = float(term.detach())
    return total, values
