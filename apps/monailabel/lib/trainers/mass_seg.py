"""``mass_seg`` training: fine-tune the served segmenter on the labels in the datastore (Slicer's "Submit label").

MONAI Label's ``BundleTrainTask`` reads one config by a fixed name, writes into the bundle's ``configs/`` and
ignores the pretrained weights this bundle names ``seg_model.pt``; this task runs the bundle's ``seg_train.json``
instead, in a run folder of the app's own (``model/mass_seg/train/<time>/``):

* the datastore's labelled images go in as a datalist of raw ``{image, label}`` pairs (``--dataset_dir`` accepts
  one) and through the bundle's preparation (the same crop, window and size as the served model's training, from
  its ``seg_preparation.json``);
* every prepared slice trains (no folds, no inner validation: the annotator chose the data); the final-epoch model
  is the result;
* training starts from the served weights (loaded strictly); when it finishes, the new weights replace them and the
  old ones are kept under ``history/`` (:meth:`~lib.model_store.SegModelStore.publish`).
"""

from __future__ import annotations

import json
import logging

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.train import TrainTask

from lib.bundle import run_stamp, workflow_parser
from lib.model_store import MODEL_FILE, SegModelStore

logger = logging.getLogger(__name__)

__all__ = ["MassSegTrain"]

#: request parameters (MONAI Label ``config``) and their defaults: a short fine-tuning run.
DEFAULTS = {"max_epochs": 5, "epoch_length": 0, "learning_rate": 1e-4, "batch_size": 4, "seed": 0}


class MassSegTrain(TrainTask):
    """Fine-tune ``mass_seg`` from the datastore's ``final`` labels (``/train/mass_seg``).

    Request parameters: ``max_epochs``, ``epoch_length`` (iterations per epoch, 0 = one pass), ``learning_rate``,
    ``batch_size``, ``seed`` (:data:`DEFAULTS`).

    Returns:
        ``{"run_dir", "weights", "num_items", "num_slices", "max_epochs", "replaced"}``.

    Raises:
        MONAILabelException: a DICOMweb datastore, no labelled image in the datastore, or no served model.
    """

    def __init__(self, store: SegModelStore) -> None:
        super().__init__("Fine-tune the mass segmenter on the labels in the datastore (PIG bundle seg_train.json)")
        self.store = store

    def config(self):
        return dict(DEFAULTS)

    def stats(self):
        return {"weights": self.store.record}

    def __call__(self, request, datastore: Datastore):
        from monailabel.datastore.dicom import DICOMWebDatastore

        from scripts.common.runinfo import read_dataset_summary

        if isinstance(datastore, DICOMWebDatastore):
            # its labels are DICOM SEG series, which the bundle's data pipeline does not read as masks
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT,
                "mass_seg training reads labels from a folder datastore; a DICOMweb datastore's labels are DICOM SEG "
                "series: export the images and labels to a folder and serve that to fine-tune",
            )
        params = {k: type(v)(request.get(k, v)) for k, v in DEFAULTS.items()}
        items = [it for it in datastore.datalist(DefaultLabelTag.FINAL) if it.get("label")]
        if not items:
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT, "mass_seg training: no labelled image in the datastore (submit labels)"
            )
        try:
            base = self.store.require()
        except FileNotFoundError as e:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, str(e)) from e
        run_dir = self.store.folder / "train" / run_stamp()
        run_dir.mkdir(parents=True)
        datalist = run_dir / "datastore_datalist.json"
        rows = [{"image": it["image"], "label": it["label"]} for it in items]
        datalist.write_text(json.dumps({"training": rows}, indent=1), encoding="utf-8")
        trained = (read_dataset_summary(str(self.store.folder), "seg_preparation.json") or {}).get("params") or {}
        overrides = {
            "ckpt_dir": str(run_dir),
            "dataset_dir": str(datalist),
            "cache_dir": str(self.store.folder / "cache"),
            "num_workers": 0,
            "max_epochs": params["max_epochs"],
            "epoch_length": params["epoch_length"] or None,
            "learning_rate": params["learning_rate"],
            "batch_size": params["batch_size"],
            "seed": params["seed"],
            # every prepared slice trains; the final-epoch model is kept (seg_train.json's saver without validation)
            "val_fraction": 0.0,
            "train#dataset#data": "$@datalist['train'] + @datalist['validation']",
            "validate#dataset#data": [],
            "run": [
                "$scripts.common.guards.check_writable(@ckpt_dir, 'ckpt_dir')",
                "$monai.utils.set_determinism(seed=@seed)",
                "$scripts.common.runinfo.write_dataset_summary(@ckpt_dir, @datalist, 'seg_preparation.json')",
                "$scripts.common.runinfo.record_run(@ckpt_dir, 'seg_training', @seed)",
                "$@train#trainer.run()",
            ],
        }
        for key in ("image_size", "crop_mode", "window_percentiles"):  # the served model's preprocessing
            if trained.get(key) is not None:
                overrides[key] = trained[key]
        parser = workflow_parser("seg_train", self.store.overlays, overrides)
        handlers = parser["train#handlers"]
        handlers.insert(
            0,
            {
                "_target_": "scripts.common.checkpoint.CheckedCheckpointLoader",
                "load_path": str(base),
                "load_dict": {"model": "@network"},
                "map_location": "@device",
                "strict": True,
                "what": "served segmentation model",
            },
        )
        parser["train#handlers"] = handlers
        logger.info("mass_seg training: %d labelled image(s) from the datastore, run folder %s", len(rows), run_dir)
        parser.get_parsed_content("run")
        num_slices = len(parser.get_parsed_content("train#dataset#data"))
        replaced = self.store.publish(run_dir, f"fine-tuned in {run_dir} on {len(rows)} datastore label(s)")
        logger.info("mass_seg training finished: %s now serves %s (previous kept in %s)", self.store.model_path,
                    run_dir / MODEL_FILE, replaced)  # fmt: skip
        return {
            "run_dir": str(run_dir),
            "weights": str(self.store.model_path),
            "num_items": len(rows),
            "num_slices": num_slices,
            "max_epochs": params["max_epochs"],
            "replaced": str(replaced),
        }
