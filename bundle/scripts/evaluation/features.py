"""Named, pluggable feature extractors for FID / KID: gray DBT slices in [0, 1] → one feature vector per image.

Every extractor takes ``(N, 1, H, W)`` float images in [0, 1] (one channel, any square or rectangular size) and
returns ``(N, D)`` float64 features on the CPU, and describes itself (:meth:`FeatureExtractor.describe`) with its
name, its weights file and that file's SHA-256, the image size it is fed, its preprocessing, and whether its numbers
are only a sanity check. FID values from different extractors are not comparable with one another; every reported
number therefore carries the extractor's description.

Registry (:data:`EXTRACTORS`, :func:`build_extractor`):

================================  =====================================================================  =======
name                              network, weights, input                                                D
================================  =====================================================================  =======
``inception_v3``                  the TensorFlow-ported FID Inception-v3 (pool3) of torch-fidelity,       2048
                                  weights ``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity
                                  release v0.2.0, converted from TensorFlow's 2015-12-05 graph), 299 px
``radimagenet_resnet50``          MONAI ``resnet50(spatial_dims=2, n_input_channels=3)`` with             2048
                                  torchvision-compatible parameter names, RadImageNet weights
                                  (``RadImageNet_ResNet50.pt``, a state dict), 224 px
``seg_unet_encoder``              the encoder of the project's segmentation MONAI ``UNet``                channels[-1]
                                  (``seg_train.json``), weights = a ``seg_model.pt`` trained on real
                                  data, deepest features global-average-pooled, at the seg image size
``random_resnet18_seed<k>``       MONAI ``resnet18`` with seeded random weights, no file: **sanity only**  512
                                  (offline smoke runs); 64 px by default
================================  =====================================================================  =======

One-channel handling: the Inception and ResNet extractors repeat the gray channel three times (the networks were
trained on RGB; a gray image is R = G = B); the seg encoder takes the single channel as trained.

torch-fidelity is not in ``requirements.txt``: its package imports torchvision at import time (its CLIP, VGG and
dataset modules), and the torchvision wheels available here are CUDA builds that need a CUDA torch (about 5.5 GB).
``inception_v3`` therefore imports it lazily and names ``requirements-fid.txt`` when it is missing.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from monai.networks.nets import UNet, resnet18, resnet50
from monai.networks.nets.resnet import ResNet

from ..common.checkpoint import file_sha256, load_weights
from ..common.value_range import unit_to_image

__all__ = [
    "EXTRACTORS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FeatureExtractor",
    "sha256_state_dict",
    "build_extractor",
    "inception_v3",
    "radimagenet_resnet50",
    "seg_unet_encoder",
    "random_resnet18",
    "torchvision_resnet_state_dict",
    "unet_encoder_features",
]

#: ImageNet channel statistics (torchvision's ``Normalize`` convention), for networks trained on RGB photographs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
RADIMAGENET_WEIGHTS = "RadImageNet_ResNet50.pt"


def sha256_state_dict(module: torch.nn.Module) -> str:
    """Hex SHA-256 of a module's state dict (names, dtypes, shapes and raw bytes, in order) — for file-less weights."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _require_file(path: str | None, what: str, option: str, file_name: str, source: str) -> str:
    """Return ``path`` or raise a FileNotFoundError naming the file to provide and the option to set."""
    if not path or not os.path.isfile(path):
        given = f"{path!r} does not exist" if path else "no path was given"
        raise FileNotFoundError(
            f"{what}: weights file needed ({given}). Download {file_name} yourself ({source}) and pass its path "
            f"with --{option} <file>; no weights are ever downloaded at run time."
        )
    return path


def _check_images(images: torch.Tensor) -> torch.Tensor:
    images = torch.as_tensor(images)
    if not images.is_floating_point():  # integer images (uint8, uint16) fail torch's min/max: check them as floats
        images = images.float()
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected gray images of shape (N, 1, H, W), got {tuple(images.shape)}")
    if images.numel() and (not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1):
        raise ValueError("images must be finite and in [0, 1] (map [-1, 1] slices with image_to_unit first)")
    return images.float()


class FeatureExtractor:
    """A frozen network plus its preprocessing: ``(N, 1, H, W)`` gray images in [0, 1] → ``(N, D)`` float64.

    Args:
        name: registry name reported with every number (e.g. ``"radimagenet_resnet50"``).
        network: the frozen feature network; put in eval mode, gradients off.
        preprocess: maps a float ``(B, 1, H, W)`` batch in [0, 1] to the network's input.
        forward: maps the preprocessed batch to ``(B, D)`` features (default: ``network(x)``).
        input_size: side in pixels of the square image fed to the network (``None``: the input's own size).
        preprocessing: one sentence saying what ``preprocess`` does (reported).
        weights_file: the weights file (``None`` for seeded random weights).
        weights_sha256: SHA-256 of ``weights_file``, or of the state dict when there is no file.
        sanity_only: True for extractors whose numbers only check the pipeline (random weights).
        source: where the network and weights come from (reported).
        batch_size: images per forward pass.
        device: where the network runs.
    """

    def __init__(
        self,
        name: str,
        network: torch.nn.Module,
        preprocess: Callable[[torch.Tensor], torch.Tensor],
        input_size: int | None,
        preprocessing: str,
        weights_file: str | None,
        weights_sha256: str,
        sanity_only: bool,
        source: str,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
    ) -> None:
        self.name = name
        self.device = torch.device(device)
        self.network = network.to(self.device).eval().requires_grad_(False)
        self.preprocess = preprocess
        self.forward = forward or self.network
        self.input_size = input_size
        self.preprocessing = preprocessing
        self.weights_file = os.path.abspath(weights_file) if weights_file else None
        self.weights_sha256 = weights_sha256
        self.sanity_only = sanity_only
        self.source = source
        self.batch_size = int(batch_size)
        self.feature_dim: int | None = None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features of ``images`` (``(N, 1, H, W)`` in [0, 1]) as ``(N, D)`` float64 on the CPU.

        Raises:
            ValueError: wrong shape (not one channel), values outside [0, 1], or non-finite features.
        """
        images = _check_images(images)
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            x = self.preprocess(images[start : start + self.batch_size].to(self.device))
            f = self.forward(x)
            out.append(f.reshape(f.shape[0], -1).double().cpu())
        feats = torch.cat(out) if out else torch.zeros(0, self.feature_dim or 0, dtype=torch.float64)
        if not torch.isfinite(feats).all():
            raise ValueError(f"{self.name}: non-finite features (check the weights file {self.weights_file})")
        self.feature_dim = feats.shape[1]
        return feats

    def describe(self) -> dict:
        """What every reported number must carry: name, weights file and SHA-256, input size, preprocessing."""
        return {
            "name": self.name,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "input_size_px": self.input_size,
            "feature_dim": self.feature_dim,
            "preprocessing": self.preprocessing,
            "sanity_only": self.sanity_only,
            "source": self.source,
        }


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    # Antialiased bilinear: shrinking a 512 px slice to 224 px without it would alias fine texture.
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _imagenet_rgb(size: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = _resize(x, size).repeat(1, 3, 1, 1)
        return (x - mean.to(x.device)) / std.to(x.device)

    return prep


def _torchvision_resnet(factory: Callable[..., ResNet]) -> ResNet:
    # torchvision's ResNet stem and shortcuts: 7x7/2 conv without bias, 3x3/2 max pool, projection shortcuts
    # ("B") without bias. feed_forward=False drops the classifier: forward() returns the (N, C) average pool.
    return factory(
        spatial_dims=2,
        n_input_channels=3,
        conv1_t_size=7,
        conv1_t_stride=2,
        shortcut_type="B",
        bias_downsample=False,
        feed_forward=False,
    )


_SEQUENTIAL_BACKBONE = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def torchvision_resnet_state_dict(state: dict) -> dict:
    """Normalise a ResNet weights file to torchvision parameter names without the classifier.

    Accepts a torchvision state dict (``conv1.weight``, ``layer1.0.conv1.weight``, ``fc.weight`` …), the same under
    ``"state_dict"``/``"model"`` or with a ``module.`` prefix (DataParallel), or RadImageNet's PyTorch backbone layout
    ``backbone.<i>.…`` (``nn.Sequential(*list(resnet50().children())[:-1])``: 0 conv1, 1 bn1, 4–7 layer1–4).
    ``fc.*`` entries are dropped (only the pooled features are used).

    Raises:
        ValueError: not a dict of tensors.
    """
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("expected a state dict (parameter name → tensor)")
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("backbone."):
            head, _, rest = key.removeprefix("backbone.").partition(".")
            key = f"{_SEQUENTIAL_BACKBONE.get(head, 'backbone.' + head)}.{rest}"
        if key.startswith("fc."):
            continue
        out[key] = value
    return out


def _load_resnet(net: ResNet, path: str, what: str) -> ResNet:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickled nn.Module, or not a torch file
        raise ValueError(
            f"{what}: {path} is not a loadable state dict ({err.__class__.__name__}); if it holds a whole pickled "
            "model, re-save it with torch.save(model.state_dict(), path)"
        ) from err
    state = torchvision_resnet_state_dict(state)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # same names, other shapes (e.g. ResNet-18 weights)
        raise ValueError(f"{what}: {path} does not match a torchvision-format ResNet: {err}") from err
    if missing or unexpected:
        raise ValueError(
            f"{what}: {path} does not match a torchvision-format ResNet: missing {sorted(missing)[:5]}…, "
            f"unexpected {sorted(unexpected)[:5]}…"
        )
    return net


def radimagenet_resnet50(
    weights_path: str | None, image_size: int | None = None, batch_size: int = 32, device="cpu"
) -> FeatureExtractor:
    """RadImageNet ResNet-50 features (2048-D global average pool) through MONAI's ``resnet50``.

    MONAI's 2-D ``resnet50`` built as in :func:`_torchvision_resnet` has exactly torchvision's parameter names and
    shapes (320 entries, checked by a test against the list torchvision 0.28 produces) and the same forward pass, so
    torchvision-format weights load without torchvision. Preprocessing: resize to ``image_size`` (default 224,
    antialiased bilinear), gray repeated to 3 channels, ImageNet mean/std normalisation.

    Source: Mei et al., *RadImageNet*, Radiology: AI 2022; weights from the RadImageNet authors' release (PyTorch
    ResNet-50), saved by the user as ``RadImageNet_ResNet50.pt`` in one of the layouts
    :func:`torchvision_resnet_state_dict` accepts. Those layouts are tested on random weights only; the released
    file itself has not been inspected here (no downloads).

    Raises:
        FileNotFoundError: ``weights_path`` missing (names the file and ``--fid_weights_path``).
        ValueError: the file is not a torchvision-format ResNet-50 state dict.
    """
    path = _require_file(
        weights_path,
        "radimagenet_resnet50",
        "fid_weights_path",
        RADIMAGENET_WEIGHTS,
        "RadImageNet PyTorch release, ResNet50.pt, from the RadImageNet authors (BMEII-AI/RadImageNet)",
    )
    size = int(image_size or 224)
    net = _load_resnet(_torchvision_resnet(resnet50), path, "radimagenet_resnet50")
    return FeatureExtractor(
        "radimagenet_resnet50",
        net,
        _imagenet_rgb(size),
        size,
        f"antialiased bilinear resize to {size} px, gray repeated to RGB, ImageNet mean/std",
        path,
        file_sha256(path),
        False,
        "MONAI resnet50 (torchvision layout), RadImageNet weights (Mei et al. 2022)",
        batch_size=batch_size,
        device=device,
    )


def random_resnet18(
    seed: int = 0, image_size: int | None = None, batch_size: int = 32, device="cpu"
) -> FeatureExtractor:
    """MONAI ``resnet18`` with weights drawn by ``torch.manual_seed(seed)``: a **sanity-only** extractor.

    Needs no file, so the smoke configuration runs offline. Random convolutional features still respond to blur
    and intensity shifts (the tests check it), but their FID/KID values mean nothing outside this pipeline check.
    Preprocessing as :func:`radimagenet_resnet50`, at ``image_size`` (default 64 px, to stay quick on a CPU).
    The reported hash is :func:`sha256_state_dict` of the seeded weights.
    """
    fork = torch.random.fork_rng(devices=[])  # do not disturb the caller's global RNG stream
    with fork:
        torch.manual_seed(int(seed))
        net = _torchvision_resnet(resnet18)
    size = int(image_size or 64)
    return FeatureExtractor(
        f"random_resnet18_seed{int(seed)}",
        net,
        _imagenet_rgb(size),
        size,
        f"antialiased bilinear resize to {size} px, gray repeated to RGB, ImageNet mean/std",
        None,
        sha256_state_dict(net),
        True,
        f"MONAI resnet18, random weights from torch.manual_seed({int(seed)}); SANITY CHECK ONLY",
        batch_size=batch_size,
        device=device,
    )


def unet_encoder_features(unet: UNet, x: torch.Tensor) -> torch.Tensor:
    """Global-average-pooled output of a MONAI ``UNet``'s deepest (bottom) block: ``(B, channels[-1])``.

    MONAI builds ``UNet.model`` as ``Sequential(down, SkipConnection(sub), up)`` recursively, the innermost
    ``SkipConnection`` wrapping the bottom block; only the down path is run (the decoder is not needed).

    Raises:
        TypeError: ``unet`` does not have that layout.
    """
    from monai.networks.layers import SkipConnection

    node = getattr(unet, "model", None)
    while True:
        if not (isinstance(node, torch.nn.Sequential) and len(node) == 3 and isinstance(node[1], SkipConnection)):
            raise TypeError("not a MONAI UNet layout (Sequential(down, SkipConnection, up))")
        x = node[0](x)
        sub = node[1].submodule
        if isinstance(sub, torch.nn.Sequential) and len(sub) == 3 and isinstance(sub[1], SkipConnection):
            node = sub
            continue
        return sub(x).mean(dim=tuple(range(2, x.ndim)))


def seg_unet_encoder(
    seg_network: UNet, seg_model_path: str | None, image_size: int, batch_size: int = 32, device="cpu"
) -> FeatureExtractor:
    """In-domain features: the encoder of the project's segmentation U-Net trained on real slices.

    Args:
        seg_network: the (untrained) ``UNet`` of ``seg_train.json``'s ``network_def`` (1 input channel).
        seg_model_path: its trained ``seg_model.pt`` (plain state dict).
        image_size: the slice size the segmenter was trained on; images are resized to it.

    Preprocessing: antialiased bilinear resize to ``image_size``, [0, 1] → [-1, 1] (the prepared slices' range the
    segmenter saw), one channel. Features: :func:`unet_encoder_features` (``channels[-1]``-D).

    Raises:
        FileNotFoundError: ``seg_model_path`` missing (names ``seg_model.pt`` and ``--seg_model_path``).
    """
    path = _require_file(
        seg_model_path,
        "seg_unet_encoder",
        "seg_model_path",
        "seg_model.pt",
        "train it on real data with configs/seg_train.json; it is written to <ckpt_dir>/seg_model.pt",
    )
    load_weights(seg_network, path, "segmentation model")
    size = int(image_size)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return unit_to_image(_resize(x, size))

    return FeatureExtractor(
        "seg_unet_encoder",
        seg_network,
        prep,
        size,
        f"antialiased bilinear resize to {size} px, [0, 1] -> [-1, 1], 1 channel",
        path,
        file_sha256(path),
        False,
        "this project's MONAI UNet segmenter (seg_train.json), bottom block, global average pool",
        forward=lambda x: unet_encoder_features(seg_network, x),
        batch_size=batch_size,
        device=device,
    )


def inception_v3(
    weights_path: str | None, image_size: int | None = None, batch_size: int = 32, device="cpu"
) -> FeatureExtractor:
    """The standard FID network: torch-fidelity's TensorFlow-compatible Inception-v3, 2048-D pool3 features.

    Preprocessing: [0, 1] → uint8 (``round(255 x)``, as an 8-bit image file would hold it), gray repeated to RGB;
    torch-fidelity then resizes to 299 px with its TensorFlow-1.x-compatible bilinear interpolation and scales to
    [-1, 1] (``image_size`` other than 299 is refused: the network's FID convention fixes it).

    Source: Heusel et al. 2017 (FID); weights ``weights-inception-2015-12-05-6726825d.pth`` of torch-fidelity
    release v0.2.0, converted from TensorFlow's Inception graph (the values pytorch-fid / clean-fid use too).

    Raises:
        ImportError: torch-fidelity not installed (names ``requirements-fid.txt``).
        FileNotFoundError: ``weights_path`` missing (names the file and ``--fid_weights_path``).
        ValueError: ``image_size`` not None/299.
    """
    if image_size not in (None, 299):
        raise ValueError("inception_v3 is fed 299 px images (FID convention); leave extractor_image_size unset")
    path = _require_file(
        weights_path,
        "inception_v3",
        "fid_weights_path",
        INCEPTION_WEIGHTS,
        "torch-fidelity GitHub release v0.2.0 (toshas/torch-fidelity)",
    )
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise ImportError(
            "inception_v3 needs torch-fidelity, which is not in requirements.txt: install it with "
            "`pip install -r requirements-fid.txt` (it pulls torchvision, which must match your torch build), "
            "or choose --fid_extractor radimagenet_resnet50 / seg_unet_encoder"
        ) from err
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return (x * 255.0).round().to(torch.uint8).repeat(1, 3, 1, 1)

    return FeatureExtractor(
        "inception_v3",
        net,
        prep,
        299,
        "round(255 x) to uint8, gray repeated to RGB, torch-fidelity's TF1-compatible bilinear resize to 299 px",
        path,
        file_sha256(path),
        False,
        "torch-fidelity FeatureExtractorInceptionV3 (TensorFlow FID Inception, pool3)",
        forward=lambda x: net(x)[0],
        batch_size=batch_size,
        device=device,
    )


#: registry names → builders; ``random_resnet18_seed<k>`` is matched by pattern (see :func:`build_extractor`).
EXTRACTORS = {
    "inception_v3": inception_v3,
    "radimagenet_resnet50": radimagenet_resnet50,
    "seg_unet_encoder": seg_unet_encoder,
    "random_resnet18_seed<k>": random_resnet18,
}


def build_extractor(
    name: str,
    weights_path: str | None = None,
    seg_network: UNet | None = None,
    seg_model_path: str | None = None,
    seg_image_size: int | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> FeatureExtractor:
    """Build the extractor called ``name`` (``--fid_extractor``).

    Args:
        name: ``inception_v3``, ``radimagenet_resnet50``, ``seg_unet_encoder`` or ``random_resnet18_seed<k>``.
        weights_path: weights file of ``inception_v3`` / ``radimagenet_resnet50`` (``--fid_weights_path``).
        seg_network, seg_model_path, seg_image_size: for ``seg_unet_encoder``.
        image_size: side fed to the network (``None``: the extractor's default).

    Raises:
        ValueError: unknown name; see the builders for their own errors.
    """
    if name == "inception_v3":
        return inception_v3(weights_path, image_size, batch_size, device)
    if name == "radimagenet_resnet50":
        return radimagenet_resnet50(weights_path, image_size, batch_size, device)
    if name == "seg_unet_encoder":
        if seg_network is None or seg_image_size is None:
            raise ValueError("seg_unet_encoder needs the segmentation network definition and its image size")
        return seg_unet_encoder(seg_network, seg_model_path, image_size or seg_image_size, batch_size, device)
    match = re.fullmatch(r"random_resnet18_seed(\d+)", str(name))
    if match:
        return random_resnet18(int(match.group(1)), image_size, batch_size, device)
    raise ValueError(f"unknown feature extractor {name!r}; choose one of {sorted(EXTRACTORS)}")
