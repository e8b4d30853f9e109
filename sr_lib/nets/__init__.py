"""Network modules only (no training logic), one file per family.

Shared argument vocabulary: `in_channels`, `out_channels`, `features`, `num_blocks`,
`scale`, `spatial_dims`. Tensors are (N, C, H, W) in 2D and (N, C, X, Y, Z) in 3D.
"""

from sr_lib.nets.layers import conv_layer, norm_layer, zero_init
from sr_lib.nets.srcnn import SRCNN
from sr_lib.nets.srresnet import SRResNet
from sr_lib.nets.discriminators import SRGANDiscriminator
from sr_lib.nets.features import VGG19Features, VGGFeatures, MRIFeatureNet

__all__ = [
    "conv_layer",
    "norm_layer",
    "zero_init",
    "SRCNN",
    "SRResNet",
    "SRGANDiscriminator",
    "VGG19Features",
    "VGGFeatures",
    "MRIFeatureNet",
]
