"""MONAI's bundle-property checks on every documented merge: ``check_properties()`` returns an empty list (not a
``KeyError``) and ``verify_net_in_out`` runs the guider, the generator (with ``timesteps``) and the segmenter on
the input the metadata describes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import smoke_overlay
from monai.bundle import verify_net_in_out
from monai.utils import BundleProperty, BundlePropertyConfig
from PIL import Image

from scripts.common.configs import (
    ABSENT_PROPERTIES,
    WORKFLOW_CONFIGS,
    WORKFLOW_TYPES,
    config_files,
    create_workflow,
    merged_config,
    meta_file,
    workflow_properties,
)

PIG_WORKFLOWS = [w for w in WORKFLOW_CONFIGS if not w.startswith("seg_")]
SEG_WORKFLOWS = [w for w in WORKFLOW_CONFIGS if w.startswith("seg_")]
# The merges the README and bundle/docs/README.md give (full scale; the demo overlay for the diffusion workflows)
# and the tests' smoke overlays. seg_inference + seg_smoke.json is a patch-mode segmenter, which reads the training
# pixel spacing of a trained model's seg_preparation.json: it is not a merge a user runs without one.
MERGES = (
    [(w, []) for w in WORKFLOW_CONFIGS]
    + [(w, ["configs/demo.json"]) for w in PIG_WORKFLOWS]
    + [(w, [smoke_overlay(w)]) for w in WORKFLOW_CONFIGS if w != "seg_inference"]
)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One prepared-slice cache for the module: merges with the same data settings prepare their slices once."""
    return tmp_path_factory.mktemp("properties_cache")


@pytest.mark.parametrize("workflow, overlays", MERGES, ids=lambda v: "+".join(v) if isinstance(v, list) else v)
def test_check_properties_lists_nothing_missing(workflow, overlays, shared_cache, tmp_path):
    run_dir = tmp_path / "run"  # engines create their TensorBoard folders when instantiated: keep them out of bundle/
    override = {"cache_dir": str(shared_cache), "ckpt_dir": str(run_dir), "output_dir": str(run_dir / "out")}
    if workflow == "seg_inference":
        (tmp_path / "in").mkdir()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 60), dtype=np.uint8)).save(tmp_path / "in/a.png")
        override["input_dir"] = str(tmp_path / "in")
    wf = create_workflow(workflow, overlays, **override)
    assert wf.get_workflow_type() == WORKFLOW_TYPES[workflow]
    assert wf.check_properties() == []
    # the properties a tool reads are real components, not string references to them
    if WORKFLOW_TYPES[workflow] == "train":
        assert type(wf.trainer).__name__ == "SupervisedTrainer" and wf.max_epochs >= 1
        assert all(isinstance(h, dict) and "_target_" in h for h in wf.parser["train#handlers"])
    else:
        assert wf.network_def is not None and wf.inferer is not None


def test_absent_properties_are_optional_and_described():
    for workflow, absent in ABSENT_PROPERTIES.items():
        props = workflow_properties(workflow)
        for name, reason in absent.items():
            assert props[name][BundleProperty.REQUIRED] is False and reason in props[name][BundleProperty.DESC]
            assert BundlePropertyConfig.REF_ID not in props[name]
    # an id the workflow does have is still required: the adjustment does not switch the check off
    assert workflow_properties("inference")["network_def"][BundleProperty.REQUIRED] is True
    assert workflow_properties("seg_evaluate")["evaluator"][BundlePropertyConfig.ID] == "validate::evaluator"


def test_a_string_trainer_breaks_monais_check(shared_cache, tmp_path):
    """The check has teeth: with ``train#trainer`` a string reference to the generator's trainer (no
    ``train#trainer#max_epochs`` id), MONAI 1.6.1's ``check_properties`` raises ``KeyError`` for that property."""
    wf = create_workflow("train", ["configs/smoke.json"], cache_dir=str(shared_cache), ckpt_dir=str(tmp_path))
    wf.parser["train#trainer"] = "@train#guider#trainer"
    with pytest.raises(KeyError, match="max_epochs"):
        wf.check_properties()


@pytest.mark.parametrize("overlays", [[], ["configs/demo.json"], ["configs/smoke.json"]], ids=["full", "demo", "smoke"])
@pytest.mark.parametrize("net_id", ["guider_def", "network_def"])
def test_verify_net_in_out_diffusion_networks(net_id, overlays):
    # the metadata describes the full-scale 512 px input; an overlay's networks are verified at its image_size
    size = merged_config("train", overlays)["image_size"]
    verify_net_in_out(
        net_id,
        meta_file=meta_file("train"),
        config_file=config_files("train", overlays),
        device="cpu",
        extra_forward_args={"timesteps": torch.tensor([10])},
        **{"_meta_#network_data_format#inputs#image#spatial_shape": [size, size]},
    )


def test_verify_net_in_out_fails_on_a_wrong_output_channel_count():
    assert merged_config("train", ["configs/smoke.json"])["image_size"] == 32
    with pytest.raises(ValueError, match="output channel number"):
        verify_net_in_out(
            "network_def",
            meta_file=meta_file("train"),
            config_file=config_files("train", ["configs/smoke.json"]),
            device="cpu",
            extra_forward_args={"timesteps": torch.tensor([10])},
            **{
                "_meta_#network_data_format#inputs#image#spatial_shape": [32, 32],
                "_meta_#network_data_format#outputs#pred#num_channels": 2,
            },
        )


@pytest.mark.parametrize("overlays", [[], ["configs/seg_smoke.json"]], ids=["full", "smoke"])
def test_verify_net_in_out_segmenter(overlays):
    size = merged_config("seg_train", overlays)["image_size"]
    verify_net_in_out(
        "network_def",
        meta_file=meta_file("seg_train"),
        config_file=config_files("seg_train", overlays),
        device="cpu",
        **{"_meta_#network_data_format#inputs#image#spatial_shape": [size, size]},
    )
