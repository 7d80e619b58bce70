"""Baselines of the PIG paper, trained and sampled by this bundle on the same data and U-Net size as PIG.

* ``image``: unconditional image-only eps-prediction DDPM (one training), sampled with all T DDPM steps or with
  DDIM on PIG's stride-consistent schedule (paper Table 1: DDPM, DDIM);
* ``concat``: mask-conditional generator, the mask concatenated to y_t as an input channel (SegGuidedDiff);
* ``controlnet``: MONAI ``ControlNet`` on the frozen ``image`` model, the mask as its conditioning (ControlNet).

The mask-conditional ones make images from training-set masks (paper Table 2's baselines). All write PIG's output
layout (``scripts.common.writer.write_samples``).
"""

from . import inferer, masks, networks, prepare_batch, sampling  # noqa: F401
