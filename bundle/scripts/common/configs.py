"""Which config files make up each workflow: the shared layers first, then the workflow's own file.

MONAI merges a ``--config_file`` list in order, later files replacing earlier top-level ids (as the model-zoo's
``brats_mri_generative_diffusion`` layers ``train_autoencoder.json``, ``train_diffusion.json``, ``inference.json``).
The bundle's layers:

* ``data.json`` — every workflow: imports, ``bundle_root``, ``device``, ``seed``, the input and cache folders, the
  slice-pipeline ids and ``datalist`` (``scripts.data.prepare.prepare_dataset``);
* ``diffusion.json`` — PIG, the baselines and the evaluation: U-Net ids, ``guider_def`` / ``network_def``, the DDPM
  and DDIM schedulers, PIG's sampler, and the training setup the diffusion workflows share;
* ``baseline.json`` — the baselines' training and sampling: generator type, its network and weight files;
* ``seg.json`` — the segmentation workflows: the U-Net, its weights file and inferer.

An id lives in the one file shared by every workflow that reads it; an overlay (``smoke.json``, ``demo.json``,
``seg_smoke.json``) comes last. This module is the one place in Python that knows the lists (experiment runners,
tests, a MONAI Label task that merges the layers into one config).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "BUNDLE_ROOT",
    "CONFIG_DIR",
    "DATA_LAYER",
    "WORKFLOW_CONFIGS",
    "METADATA",
    "config_files",
    "meta_file",
    "merged_config",
    "data_ids",
    "WORKFLOW_TYPES",
    "ABSENT_PROPERTIES",
    "workflow_properties",
    "create_workflow",
]

BUNDLE_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = BUNDLE_ROOT / "configs"

#: the layer every workflow loads first (imports, folders, the slice pipeline and ``datalist``).
DATA_LAYER = "data.json"
#: ``datalist`` arguments that are not slice-pipeline settings (see :func:`data_ids`).
_NOT_DATA_IDS = ("dataset_dir", "cache_dir", "seed")

#: workflow config name → its config files in merge order (names inside ``configs/``).
WORKFLOW_CONFIGS: dict[str, tuple[str, ...]] = {
    "train": ("data.json", "diffusion.json", "train.json"),
    "inference": ("data.json", "diffusion.json", "inference.json"),
    "evaluate": ("data.json", "diffusion.json", "evaluate.json"),
    "baseline_train": ("data.json", "diffusion.json", "baseline.json", "baseline_train.json"),
    "baseline_inference": ("data.json", "diffusion.json", "baseline.json", "baseline_inference.json"),
    "seg_train": ("data.json", "seg.json", "seg_train.json"),
    "seg_evaluate": ("data.json", "seg.json", "seg_train.json", "seg_evaluate.json"),
    "seg_inference": ("data.json", "seg.json", "seg_inference.json"),
}
#: workflow config name → its ``--meta_file`` (the generator bundle's or the segmenter's).
METADATA = {name: "seg_metadata.json" if name.startswith("seg_") else "metadata.json" for name in WORKFLOW_CONFIGS}

#: workflow config name → MONAI workflow type: ``"train"`` checks ``monai.bundle.properties.TrainProperties``,
#: ``"infer"`` (inference and evaluation) ``InferProperties``; both add ``MetaProperties``.
WORKFLOW_TYPES: dict[str, str] = {
    name: "train" if name in ("train", "baseline_train", "seg_train") else "infer" for name in WORKFLOW_CONFIGS
}

_NO_DATASET = "the sampler draws pairs from noise: no input images, so no dataset"
_NO_EVALUATOR = "the run is a sampling loop, not an engine over a dataset: no evaluator"
#: workflow → MONAI property → why the workflow legitimately has no such id. These properties are made optional
#: (and unreferenced) for that workflow instead of adding ids nothing would use.
ABSENT_PROPERTIES: dict[str, dict[str, str]] = {
    "inference": {"dataset": _NO_DATASET, "evaluator": _NO_EVALUATOR},
    "baseline_inference": {"dataset": _NO_DATASET, "evaluator": _NO_EVALUATOR},
    "evaluate": {
        "dataset": "FID/KID read the real slices and the generated folder as image sets, not through a dataset",
        "evaluator": "the metrics are computed by scripts.evaluation over two feature sets, not by an engine",
    },
}
#: workflow → the section its infer-type properties live under: the segmenter's evaluation is the training
#: config's validation part run alone, so its dataset, evaluator, handlers, ... are ``validate#...`` ids.
_PROPERTY_SECTION: dict[str, str] = {"seg_evaluate": "validate"}


def _resolve(path: str | Path) -> Path:
    """An overlay path: absolute, or relative to ``bundle/``; FileNotFoundError names it."""
    full = Path(path) if Path(path).is_absolute() else BUNDLE_ROOT / path
    if not full.is_file():
        raise FileNotFoundError(f"config file {full} not found")
    return full


def config_files(workflow: str, overlays: Sequence[str | Path] = ()) -> list[str]:
    """Absolute paths of ``workflow``'s config files, then ``overlays`` (absolute or relative to ``bundle/``).

    Raises:
        KeyError: unknown ``workflow`` (the message lists the known ones).
        FileNotFoundError: an overlay that does not exist.
    """
    if workflow not in WORKFLOW_CONFIGS:
        raise KeyError(f"unknown workflow config {workflow!r}; known: {sorted(WORKFLOW_CONFIGS)}")
    return [str(CONFIG_DIR / name) for name in WORKFLOW_CONFIGS[workflow]] + [str(_resolve(o)) for o in overlays]


def meta_file(workflow: str) -> str:
    """Absolute path of ``workflow``'s metadata file (KeyError for an unknown workflow)."""
    return str(CONFIG_DIR / METADATA[workflow])


def merged_config(
    workflow: str, overlays: Sequence[str | Path] = (), overrides: Mapping[str, object] | None = None
) -> dict:
    """The merged config of ``workflow`` + ``overlays`` + ``overrides`` as one dict, as ``monai.bundle run`` builds it.

    For tools that read a single config (e.g. a MONAI Label bundle task): the result can be given to MONAI's
    ``ConfigParser`` or ``ConfigWorkflow`` as the config itself.

    Raises:
        KeyError, FileNotFoundError: see :func:`config_files`.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser(ConfigParser.load_config_files(config_files(workflow, overlays)))
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser.get()


def workflow_properties(workflow: str) -> dict[str, dict]:
    """MONAI's bundle properties for ``workflow`` (``TrainProperties`` or ``InferProperties`` + ``MetaProperties``),
    adjusted to where this bundle keeps them: ids moved under :data:`_PROPERTY_SECTION`, and the properties in
    :data:`ABSENT_PROPERTIES` made optional with no reference to check.

    Returns:
        property name → ``{"description", "required", "id", "refer_id"}`` (MONAI's ``BundleProperty`` /
        ``BundlePropertyConfig`` keys), ids in MONAI's ``::`` form; a new dict on each call.

    Raises:
        KeyError: unknown ``workflow``.
    """
    from monai.bundle.properties import InferProperties, MetaProperties, TrainProperties
    from monai.utils import BundleProperty, BundlePropertyConfig

    if workflow not in WORKFLOW_CONFIGS:
        raise KeyError(f"unknown workflow config {workflow!r}; known: {sorted(WORKFLOW_CONFIGS)}")
    base = TrainProperties if WORKFLOW_TYPES[workflow] == "train" else InferProperties
    props = {name: dict(p) for name, p in {**base, **MetaProperties}.items()}
    section = _PROPERTY_SECTION.get(workflow)
    if section is not None:
        shared = ("bundle_root", "device", "dataset_dir", "network_def", "inferer")  # top-level ids in every layer
        for name, p in props.items():
            if name in base and name not in shared:
                for key in (BundlePropertyConfig.ID, BundlePropertyConfig.REF_ID):
                    if p.get(key) is not None:
                        p[key] = f"{section}::{p[key]}"
    for name, reason in ABSENT_PROPERTIES.get(workflow, {}).items():
        props[name].update({BundleProperty.REQUIRED: False, BundleProperty.DESC: f"absent: {reason}"})
        props[name].pop(BundlePropertyConfig.REF_ID, None)
    return props


def create_workflow(workflow: str, overlays: Sequence[str | Path] = (), **override):
    """``workflow`` + ``overlays`` as an initialised ``monai.bundle.ConfigWorkflow`` of the right workflow type, whose
    ``check_properties()`` checks the properties this workflow has (:func:`workflow_properties`).

    ``monai.bundle run`` creates its ``ConfigWorkflow`` without a workflow type, so it checks no properties; tools
    that query a workflow's properties (MONAI Label, tests) create it here.

    Args:
        workflow: a :data:`WORKFLOW_CONFIGS` name.
        overlays: extra config files, absolute or relative to ``bundle/``.
        override: config ids to replace, as on the ``monai.bundle run`` command line (``ckpt_dir="runs/demo"``).

    Raises:
        KeyError, FileNotFoundError: see :func:`config_files`.
    """
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=config_files(workflow, overlays),
        meta_file=meta_file(workflow),
        workflow_type=WORKFLOW_TYPES[workflow],
        **override,
    )
    wf.properties = workflow_properties(workflow)
    wf.initialize()
    return wf


def data_ids() -> tuple[str, ...]:
    """The slice-pipeline ids of the data layer: the ``@id`` arguments of its ``datalist`` component, in order,
    without the folders and the seed (``image_size``, ``crop_mode``, ``min_lesion_area``, ...).

    Two workflows that agree on these ids (and on ``dataset_dir``, ``cache_dir``, ``seed``) prepare the same slices.
    """
    import json

    layer = json.loads((CONFIG_DIR / DATA_LAYER).read_text(encoding="utf-8"))
    args = {k: v for k, v in layer["datalist"].items() if not k.startswith("_")}
    refs = [v[1:] for v in args.values() if isinstance(v, str) and v.startswith("@")]
    return tuple(r for r in refs if r not in _NOT_DATA_IDS)
