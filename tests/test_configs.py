"""Bundle configs: overlays only touch ids that exist, schedulers are explicit, metadata is complete."""

import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

CONFIGS = Path(__file__).resolve().parents[1] / "bundle" / "configs"
BASES = ["train.json", "inference.json"]
BASELINES = ["baseline_train.json", "baseline_inference.json"]
OVERLAYS = ["smoke.json", "demo.json"]


def load(name):
    with open(CONFIGS / name, encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("base", BASES + BASELINES)
def test_overlay_ids_exist_in_base(overlay, base):
    # MONAI silently adds unknown ids, so a typo in an overlay would give a full-size "smoke" run.
    over, cfg = load(overlay), load(base)
    assert all("#" not in k and "::" not in k and not k.startswith("+") for k in over), "overlay ids must be flat"
    missing = sorted(set(over) - set(cfg))
    assert not missing, f"{overlay} sets ids absent from {base}: {missing}"
    assert "dataset_dir" not in over


def _components(node, path=""):
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for k, v in node.items():
            yield from _components(v, f"{path}#{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _components(v, f"{path}#{i}")


@pytest.mark.parametrize("base", BASES + BASELINES)
def test_every_scheduler_sets_clip_sample_and_paper_schedule(base):
    cfg = load(base)
    schedulers = [(p, c) for p, c in _components(cfg) if "schedulers." in c["_target_"]]
    assert schedulers
    for path, comp in schedulers:
        assert "clip_sample" in comp, f"{base}:{path} leaves clip_sample to MONAI's default"
        assert comp["schedule"] == "linear_beta"
    assert cfg["num_train_timesteps"] == 1024 and cfg["beta_start"] == 1e-4 and cfg["beta_end"] == 0.02


@pytest.mark.parametrize("base", BASES)
def test_full_scale_defaults_are_the_papers(base):
    cfg = load(base)
    assert cfg["image_size"] == 512
    assert cfg["channels"] == [32, 32, 64, 64, 128, 128]
    assert cfg["attention_levels"] == [False] * 5 + [True]
    assert cfg["num_res_blocks"] == 2 and cfg["num_head_channels"] == 32
    parser = ConfigParser(cfg)
    net = parser.get_parsed_content("network_def")
    assert sum(p.numel() for p in net.parameters()) == 7_125_409
    if base == "inference.json":
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
    pig_train, pig_inf = load("train.json"), load("inference.json")
    shared = ["channels", "attention_levels", "num_res_blocks", "num_head_channels", "norm_num_groups"]
    shared += ["num_train_timesteps", "beta_start", "beta_end", "clip_sample", "image_size", "num_inference_steps"]
    for base, pig in (("baseline_train.json", pig_train), ("baseline_inference.json", pig_inf)):
        cfg = load(base)
        assert {k: cfg[k] for k in shared} == {k: pig[k] for k in shared}, base
        assert cfg["generator_type"] == "image"
    cfg = load("baseline_train.json")
    training = ["batch_size", "learning_rate", "max_epochs", "antithetic_timesteps", "lr_factor", "lr_patience"]
    assert {k: cfg[k] for k in training} == {k: pig_train[k] for k in training}
    assert load("baseline_inference.json")["sampler"] == "ddim"
    pig_net = ConfigParser(pig_train).get_parsed_content("network_def")
    pig_params = sum(p.numel() for p in pig_net.parameters())
    first_conv = pig_net.conv_in.conv.weight  # (32, 2, 3, 3): the one layer whose size depends on in_channels
    per_input_channel = first_conv.shape[0] * first_conv.shape[2] * first_conv.shape[3]
    for generator_type, in_channels in (("image", 1), ("concat", 2)):
        parser = ConfigParser(cfg)
        parser["generator_type"] = generator_type
        net = parser.get_parsed_content("network_def")
        assert net.in_channels == in_channels
        assert sum(p.numel() for p in net.parameters()) == pig_params - (2 - in_channels) * per_input_channel
    parser = ConfigParser(cfg)
    controlnet = parser.get_parsed_content("controlnet_def")
    image_model = parser.get_parsed_content("image_model_def")
    assert type(controlnet).__name__ == "ControlNet" and image_model.in_channels == 1
