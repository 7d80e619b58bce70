"""``pig_synthesis``: generate (slice, mass mask) pairs with PIG and add them to the datastore as synthetic studies.

Which MONAI Label mechanism carries it: a **scoring method**, run with ``POST /scoring/pig_synthesis`` (body: the
parameters below). Sampling draws pairs from noise, so there is no input image; MONAI Label's ``/infer`` needs one,
and ``/batch/infer`` iterates over the datastore's images. Scoring tasks are MONAI Label's background jobs over the
whole datastore: one runs in a process of its own (``AsyncTask``), its log lines are its progress
(``GET /scoring/``, "generated k/N samples"), ``DELETE /scoring/`` cancels it (the process is killed), and it gets
the datastore to write into. The model list (``/info/``) shows ``pig_synthesis`` too, with these parameters, via
:class:`PigSynthesisInfo`.

Each run samples into its own folder, ``<app>/model/pig_synthesis/runs/<time>-s<seed>/`` (the bundle's
``inference.json``: ``<id>_image.nii.gz``, ``<id>_label.nii.gz``, ``manifest.csv``, run record), and only a finished
run's pairs enter the datastore, each as image ``<id>`` with its label (tag ``final``) and ``info`` saying
``synthetic: true``, the generator, seed, DDIM steps and checkpoint hashes: a cancelled run adds nothing and keeps
the pairs it had written. In a DICOMweb datastore the pairs are stored into the PACS only when the server was started
with ``--conf store_synthetic_to_pacs true`` (Secondary Capture slices marked Synthetic Data YES, with their DICOM
SEG); otherwise they stay in the run folder.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod

from lib.bundle import run_stamp, workflow_parser

logger = logging.getLogger(__name__)

__all__ = ["SYNTHESIS_DEFAULTS", "PigSynthesis", "PigSynthesisInfo"]

#: request parameters and defaults; ``ddim_steps`` 0 means the checkpoint config's ``num_inference_steps``.
SYNTHESIS_DEFAULTS = {"num_pairs": 4, "seed": 0, "ddim_steps": 0, "batch_size": 1}


class PigSynthesis(ScoringMethod):
    """Sample PIG pairs and add them to the datastore (see the module docstring).

    Args:
        ckpt_dir: folder with ``guider.pt`` and ``generator.pt`` (a bundle ``train.json`` ``ckpt_dir``).
        overlays: the configs those weights were trained with (default: the demo size, ``configs/demo.json``).
        runs_dir: where each run's folder is made.
        store_to_pacs: whether a DICOMweb datastore receives the pairs (opt-in).

    Request parameters: ``num_pairs`` (>= 1), ``seed``, ``ddim_steps`` (>= 1, or 0 for the configured number),
    ``batch_size``.

    Returns:
        ``{"run_dir", "added": [image ids], "num_pairs", "seed", "ddim_steps"}``.

    Raises:
        MONAILabelException: bad parameters, missing weights (names the folder), a DICOMweb datastore without
            ``store_synthetic_to_pacs``.
    """

    def __init__(self, ckpt_dir: str, overlays: list[str], runs_dir: str, store_to_pacs: bool = False) -> None:
        super().__init__("Generate synthetic DBT slice + mass mask pairs with PIG and add them as new studies")
        self.ckpt_dir, self.overlays, self.runs_dir = str(ckpt_dir), list(overlays), Path(runs_dir)
        self.store_to_pacs = store_to_pacs

    def has_weights(self) -> bool:
        """Whether ``ckpt_dir`` holds both networks' weights."""
        return all(os.path.isfile(os.path.join(self.ckpt_dir, n)) for n in ("guider.pt", "generator.pt"))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "config": dict(SYNTHESIS_DEFAULTS), "ckpt_dir": self.ckpt_dir,
                "overlays": self.overlays, "weights": self.has_weights()}  # fmt: skip

    def _params(self, request) -> dict:
        try:
            p = {k: int(request.get(k, v)) for k, v in SYNTHESIS_DEFAULTS.items()}
        except (TypeError, ValueError) as e:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"pig_synthesis: bad parameter: {e}") from e
        if p["num_pairs"] < 1 or p["batch_size"] < 1 or p["ddim_steps"] < 0:
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT,
                f"pig_synthesis: need num_pairs >= 1, batch_size >= 1, ddim_steps >= 0, got {p}",
            )
        return p

    def __call__(self, request, datastore: Datastore):
        from monailabel.datastore.dicom import DICOMWebDatastore

        p = self._params(request)
        dicomweb = isinstance(datastore, DICOMWebDatastore)
        if dicomweb and not self.store_to_pacs:
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT,
                "pig_synthesis: this datastore is a PACS; storing synthetic studies into it is opt-in: restart the "
                "server with --conf store_synthetic_to_pacs true",
            )
        if not self.has_weights():
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT,
                f"pig_synthesis: no guider.pt + generator.pt in {self.ckpt_dir}; train PIG with the bundle "
                "(train.json) and start the server with --conf pig_ckpt_dir <its ckpt_dir>",
            )
        run_dir = self.runs_dir / f"{run_stamp()}-s{p['seed']}"
        overrides = {
            "ckpt_dir": self.ckpt_dir,
            "output_dir": str(run_dir),
            "num_samples": p["num_pairs"],
            "batch_size": p["batch_size"],
            "seed": p["seed"],
            "output_formats": "nifti,dicom_seg" if dicomweb else "nifti",
        }
        if p["ddim_steps"]:
            overrides["num_inference_steps"] = p["ddim_steps"]
        parser = workflow_parser("inference", self.overlays, overrides)
        steps = int(parser.get_parsed_content("num_inference_steps"))
        logger.info("pig_synthesis: %d pair(s), seed %d, %d DDIM steps, into %s", p["num_pairs"], p["seed"], steps,
                    run_dir)  # fmt: skip
        parser.get_parsed_content("run")  # the bundle's inference.json run list (checks, sampling, run record)
        with open(run_dir / "manifest.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        added = []
        for row in rows:
            info = {
                "synthetic": True,
                "generator": "PIG (paired DDIM)",
                "seed": p["seed"],
                "sample_index": int(row["sample_index"]),
                "ddim_steps": steps,
                "num_pairs": p["num_pairs"],
                "guider": row.get("guider", ""),
                "generator_weights": row.get("generator", ""),
                "run_dir": str(run_dir),
            }
            if dicomweb:
                added.append(self._store_dicom(datastore, run_dir, row["id"]))
                continue
            image_id = datastore.add_image(row["id"], str(run_dir / row["image"]), info)
            datastore.save_label(image_id, str(run_dir / row["label"]), DefaultLabelTag.FINAL, info)
            added.append(image_id)
            logger.info("pig_synthesis: added %s with its label (%d/%d)", image_id, len(added), len(rows))
        return {"run_dir": str(run_dir), "added": added, "num_pairs": len(rows), "seed": p["seed"],
                "ddim_steps": steps}  # fmt: skip

    @staticmethod
    def _store_dicom(datastore, run_dir: Path, pair_id: str) -> str:
        """STOW ``<id>_image.dcm`` and ``<id>_label_seg.dcm`` to the PACS; returns the image's Series Instance UID."""
        import pydicom

        image = pydicom.dcmread(run_dir / f"{pair_id}_image.dcm")
        seg = pydicom.dcmread(run_dir / f"{pair_id}_label_seg.dcm")
        datastore._client.store_instances([image, seg])
        logger.info("pig_synthesis: stored %s (series %s) and its SEG in the PACS", pair_id, image.SeriesInstanceUID)
        return str(image.SeriesInstanceUID)


class PigSynthesisInfo(InferTask):
    """``pig_synthesis`` in the model list of ``/info/`` (type ``generation``, its parameters as ``config``).

    It is not an inference model: a request to ``/infer/pig_synthesis`` answers 400 with how to run the job.
    """

    def __init__(self, method: PigSynthesis) -> None:
        super().__init__(
            type="generation",
            labels={"mass": 1},
            dimension=2,
            description=method.description + " (background job: POST /scoring/pig_synthesis)",
            config=dict(SYNTHESIS_DEFAULTS),
        )
        self.method = method

    def is_valid(self) -> bool:
        return True

    def info(self) -> dict[str, Any]:
        return {**super().info(), "weights": self.method.has_weights(), "ckpt_dir": self.method.ckpt_dir}

    def __call__(self, request):
        from fastapi import HTTPException

        raise HTTPException(
            status_code=400,
            detail="pig_synthesis draws pairs from noise and takes no image: run it as a background job with "
            "POST /scoring/pig_synthesis {num_pairs, seed, ddim_steps}; GET /scoring/ shows its progress, "
            "DELETE /scoring/ cancels it",
        )
