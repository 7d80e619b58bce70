"""The PIG method (Zhang et al., MICCAI 2025): the paired DDIM sampler, its schedule and x̂0 binarisation, the
guider's batch preparation and the generator's training step, and PIG's sampling workflows.

Other packages import only these public names (``from scripts.pig import ...``).
"""

from .binarize import binarize_mask
from .generator_iteration import GeneratorIteration
from .inferer import PairedDDIMInferer
from .prepare_batch import PairedDiffusionPrepareBatch
from .sampling import generate_pairs, preview_samples, sample_noise, sample_pairs
from .schedule import predict_x0, set_ddim_timesteps

__all__ = [
    "binarize_mask",
    "GeneratorIteration",
    "PairedDDIMInferer",
    "PairedDiffusionPrepareBatch",
    "generate_pairs",
    "preview_samples",
    "sample_noise",
    "sample_pairs",
    "predict_x0",
    "set_ddim_timesteps",
]
