"""Network modules only (no training logic), one file per family.

Shared argument vocabulary: `in_channels`, `out_channels`, `features`, `num_blocks`,
`scale`, `spatial_dims`. Tensors are (N, C, H, W) in 2D and (N, C, X, Y, Z) in 3D.
"""

from sr_lib.nets.layers import conv_layer, norm_layer, zero_init
from sr_lib.nets.srcnn import SRCNN
from sr_lib.nets.drcn import DRCN
from sr_lib.nets.srresnet import SRResNet
from sr_lib.nets.discriminators import SRGANDiscriminator
from sr_lib.nets.features import VGG19Features, VGGFeatures, MRIFeatureNet
from sr_lib.nets.cpce import CPCE, CPCEDiscriminator
from sr_lib.nets.circle import CircleDiscriminator, CircleGenerator
from sr_lib.nets.unet import UNet
from sr_lib.nets.fcn import FCN1, FCN2
from sr_lib.nets.dcsrn import DCSRN
from sr_lib.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from sr_lib.nets.patchgan import PatchGAN

__all__ = [
    "conv_layer",
    "norm_layer",
    "zero_init",
    "SRCNN",
    "DRCN",
    "SRResNet",
    "SRGANDiscriminator",
    "VGG19Features",
    "VGGFeatures",
    "MRIFeatureNet",
    "CPCE",
    "CPCEDiscriminator",
    "CircleGenerator",
    "CircleDiscriminator",
    "UNet",
    "FCN1",
    "FCN2",
    "DCSRN",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "PatchGAN",
]
