"""Bundle configs: each shared part has one home, overlays only touch ids the layers define, schedulers are explicit,
the defaults are the paper's, metadata is complete."""

import json
import re

import pytest
from helpers import CONFIGS, parser

from scripts.common.configs import DATA_LAYER, METADATA, WORKFLOW_CONFIGS, data_ids, merged_config

PIG_FAMILY = [w for w, meta in METADATA.items() if meta == "metadata.json"]
SEG_FAMILY = [w for w, meta in METADATA.items() if meta == "seg_metadata.json"]
OVERLAYS = {"smoke.json": PIG_FAMILY, "demo.json": PIG_FAMILY, "seg_smoke.json": SEG_FAMILY}
CONFIG_FILES = sorted({f for files in WORKFLOW_CONFIGS.values() for f in files})


def load(name):
    with open(CONFIGS / name, encoding="utf-8") as f:
        return json.load(f)


def _components(node, path=""):
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for k, v in node.items():
            yield from _components(v, f"{path}#{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _components(v, f"{path}#{i}")


def _homes(predicate) -> list[str]:
    """The config files holding a top-level id or a component for which ``predicate(key, value)`` holds."""
    out = []
    for name in CONFIG_FILES:
        cfg = load(name)
        if any(predicate(k, v) for k, v in cfg.items()) or any(predicate(p, c) for p, c in _components(cfg)):
            out.append(name)
    return out


@pytest.mark.parametrize(
    "what, predicate, homes",
    [
        ("datalist", lambda k, v: k == "datalist", ["data.json"]),
        ("guider_def", lambda k, v: k == "guider_def", ["diffusion.json"]),
        ("network_def", lambda k, v: k == "network_def", ["diffusion.json", "seg.json"]),
        ("DDPM scheduler", lambda k, v: isinstance(v, dict) and "DDPMScheduler" in str(v.get("_target_")),
         ["diffusion.json"]),
        ("DDIM scheduler", lambda k, v: isinstance(v, dict) and "DDIMScheduler" in str(v.get("_target_")),
         ["diffusion.json"]),
        ("prepare_dataset", lambda k, v: "prepare_dataset" in json.dumps(v), ["data.json"]),
    ],
)  # fmt: skip
def test_each_shared_part_is_defined_in_one_file(what, predicate, homes):
    # network_def: one per bundle (the generator's in diffusion.json, the segmenter's in seg.json); baseline.json only
    # overrides its in_channels (``network_def#in_channels``).
    assert _homes(predicate) == homes, what


def test_the_data_layer_comes_first_everywhere_and_holds_the_slice_pipeline_ids():
    for workflow, files in WORKFLOW_CONFIGS.items():
        assert files[0] == DATA_LAYER, workflow
    layer = load(DATA_LAYER)
    ids = data_ids()
    assert ids[:2] == ("image_size", "crop_mode") and "lesion_free_fraction" in ids and "seed" not in ids
    assert all(i in layer for i in ids)
    # every other config file reads these ids from the layer instead of repeating them
    for name in CONFIG_FILES:
        if name != DATA_LAYER:
            assert not set(ids) & set(load(name)), name


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_overlay_ids_exist_in_the_merged_layers(overlay):
    """An overlay id is defined by the merged configs of every workflow of its family, except ids that only files the
    workflow does not load define (``fid_extractor``: evaluate.json; the seg training ids: seg_train.json), which that
    workflow ignores. MONAI silently adds unknown ids, so a typo in an overlay would give a full-size "smoke" run."""
    over = load(overlay)
    assert all("#" not in k and "::" not in k and not k.startswith("+") for k in over), "overlay ids must be flat"
    assert "dataset_dir" not in over
    family = OVERLAYS[overlay]
    files = {f for w in family for f in WORKFLOW_CONFIGS[w]}
    assert not sorted(set(over) - set().union(*(set(load(f)) for f in files))), f"{overlay}: ids no config defines"
    for workflow in family:
        missing = set(over) - set(merged_config(workflow))
        read_elsewhere = set().union(*(set(load(f)) for f in files - set(WORKFLOW_CONFIGS[workflow])))
        assert missing <= read_elsewhere, f"{overlay} on {workflow}: {sorted(missing - read_elsewhere)} not defined"


def _references(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _references(v)
    elif isinstance(node, list):
        for v in node:
            yield from _references(v)
    elif isinstance(node, str) and node.startswith(("$", "@")):
        yield from (m.rstrip("#") for m in re.findall(r"@([A-Za-z_][\w#]*)", node))


@pytest.mark.parametrize("workflow", list(WORKFLOW_CONFIGS))
def test_every_reference_of_a_workflow_is_defined_by_its_files(workflow):
    """A workflow may only use ids that its own layers and file define (not one that only another workflow loads)."""
    p = parser(workflow)
    refs = sorted(set(_references(p.get())))
    assert refs and not [r for r in refs if r not in p], workflow
    assert p.get_parsed_content("network_def") is not None


@pytest.mark.parametrize("workflow", [w for w in PIG_FAMILY if w != "evaluate"])
def test_every_scheduler_sets_clip_sample_and_paper_schedule(workflow):
    cfg = merged_config(workflow)
    schedulers = [(p, c) for p, c in _components(cfg) if "schedulers." in c["_target_"]]
    assert len(schedulers) == 2  # DDPM (training noise, DDPM sampling) and DDIM (sampling)
    for path, comp in schedulers:
        assert "clip_sample" in comp, f"{workflow}:{path} leaves clip_sample to MONAI's default"
        assert comp["schedule"] == "linear_beta"
    assert cfg["num_train_timesteps"] == 1024 and cfg["beta_start"] == 1e-4 and cfg["beta_end"] == 0.02


@pytest.mark.parametrize("workflow", ["train", "inference"])
def test_full_scale_defaults_are_the_papers(workflow):
    cfg = merged_config(workflow)
    assert cfg["image_size"] == 512
    assert cfg["channels"] == [32, 32, 64, 64, 128, 128]
    assert cfg["attention_levels"] == [False] * 5 + [True]
    assert cfg["num_res_blocks"] == 2 and cfg["num_head_channels"] == 32
    net = parser(workflow).get_parsed_content("network_def")
    assert sum(p.numel() for p in net.parameters()) == 7_125_409
    if workflow == "inference":
        assert cfg["num_inference_steps"] == 256 and cfg["binarize_x0"] is True
    else:
        assert cfg["learning_rate"] == 2e-4 and cfg["batch_size"] == 6 and cfg["max_epochs"] == 128


def test_metadata_fields():
    meta = load("metadata.json")
    for key in [
        "schema",
        "version",
        "changelog",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "required_packages_version",
        "task",
        "description",
        "authors",
        "references",
        "data_source",
        "intended_use",
        "network_data_format",
        "guider_data_format",
        "copyright",
        "name",
    ]:
        assert meta.get(key), f"metadata.json lacks {key}"
    assert meta["version"] in meta["changelog"]
    for fmt in ("network_data_format", "guider_data_format"):
        assert "image" in meta[fmt]["inputs"] and "pred" in meta[fmt]["outputs"]
    assert meta["guider_data_format"]["inputs"]["image"]["channel_def"]["0"].startswith("noisy mask")
    assert meta["network_data_format"]["inputs"]["image"]["channel_def"]["0"].startswith("noisy slice")


def test_baselines_share_the_pig_networks_size_and_settings():
    # Table 1/2 baselines must be the PIG U-Net with the same defaults, so every overlay shrinks them alike.
    pig_train, pig_inf = merged_config("train"), merged_config("inference")
    shared = ["channels", "attention_levels", "num_res_blocks", "num_head_channels", "norm_num_groups"]
    shared += ["num_train_timesteps", "beta_start", "beta_end", "clip_sample", "image_size", "num_inference_steps"]
    for workflow, pig in (("baseline_train", pig_train), ("baseline_inference", pig_inf)):
        cfg = merged_config(workflow)
        assert {k: cfg[k] for k in shared} == {k: pig[k] for k in shared}, workflow
        assert cfg["generator_type"] == "image"
    cfg = merged_config("baseline_train")
    training = ["batch_size", "learning_rate", "max_epochs", "antithetic_timesteps", "lr_factor", "lr_patience"]
    assert {k: cfg[k] for k in training} == {k: pig_train[k] for k in training}
    assert merged_config("baseline_inference")["sampler"] == "ddim"
    pig_net = parser("train").get_parsed_content("network_def")
    pig_params = sum(p.numel() for p in pig_net.parameters())
    first_conv = pig_net.conv_in.conv.weight  # (32, 2, 3, 3): the one layer whose size depends on in_channels
    per_input_channel = first_conv.shape[0] * first_conv.shape[2] * first_conv.shape[3]
    for generator_type, in_channels in (("image", 1), ("concat", 2)):
        p = parser("baseline_train", generator_type=generator_type)
        net = p.get_parsed_content("network_def")
        assert net.in_channels == in_channels
        assert sum(p.numel() for p in net.parameters()) == pig_params - (2 - in_channels) * per_input_channel
    p = parser("baseline_train")
    controlnet = p.get_parsed_content("controlnet_def")
    image_model = p.get_parsed_content("image_model_def")
    assert type(controlnet).__name__ == "ControlNet" and image_model.in_channels == 1
