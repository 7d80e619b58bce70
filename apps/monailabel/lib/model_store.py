"""The app's own copy of the mass segmenter: ``<app>/model/mass_seg/`` (MONAI Label's writes never touch the bundle).

Layout::

    model/mass_seg/seg_model.pt           the weights inference serves (plain state_dict of seg.json's UNet)
    model/mass_seg/seg_preparation.json   the preprocessing they were trained with (image_size, crop, window, spacing)
    model/mass_seg/app_model.json         where they came from: source folder, overlays, SHA-256, history
    model/mass_seg/history/<time>/        every replaced version, kept (fine-tuning never loses a model)
    model/mass_seg/train/<time>/          each fine-tuning run's own ckpt_dir (logs, run record)

At start the store is filled from ``--conf ckpt_dir`` (a bundle ``seg_train.json`` output folder) when it is empty;
a store that already holds a fine-tuned model keeps it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

from lib.bundle import run_stamp, use_bundle, workflow_parser

logger = logging.getLogger(__name__)

__all__ = ["MODEL_FILE", "SUMMARY_FILE", "NoModelError", "SegModelStore"]

MODEL_FILE = "seg_model.pt"
SUMMARY_FILE = "seg_preparation.json"
_RECORD = "app_model.json"


class NoModelError(FileNotFoundError):
    """No segmentation weights to serve; the message says where they were looked for and how to provide them."""


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class SegModelStore:
    """The segmenter's weights as the app serves and fine-tunes them.

    Args:
        folder: the store (``<app>/model/mass_seg``), created if missing.
        source_ckpt_dir: a bundle segmentation ``ckpt_dir`` (``seg_model.pt`` + ``seg_preparation.json``), copied in
            when the store holds no model; never written.
        overlays: overlay configs of the model's architecture (``configs/seg_smoke.json``...), recorded with it.
    """

    def __init__(self, folder: str | Path, source_ckpt_dir: str | Path, overlays: Sequence[str] = ()) -> None:
        self.folder, self.source = Path(folder), Path(source_ckpt_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        if not self.model_path.is_file() and (self.source / MODEL_FILE).is_file():
            self._import_source(list(overlays))
        elif self.model_path.is_file():
            logger.info("mass_seg: serving the app's model %s (%s)", self.model_path, self.record.get("origin"))
        if self.model_path.is_file() and overlays and list(overlays) != self.overlays:
            self._write_record({**self.record, "overlays": list(overlays)})

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE

    @property
    def record(self) -> dict:
        path = self.folder / _RECORD
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    @property
    def overlays(self) -> list[str]:
        return list(self.record.get("overlays", []))

    def _write_record(self, record: dict) -> None:
        tmp = self.folder / (_RECORD + ".tmp")
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(tmp, self.folder / _RECORD)

    def _import_source(self, overlays: list[str]) -> None:
        from scripts.common.checkpoint import file_sha256

        for name in (SUMMARY_FILE, MODEL_FILE):  # the weights last: their presence means a complete copy
            if (self.source / name).is_file():
                _copy_atomic(self.source / name, self.folder / name)
        self._write_record(
            {
                "origin": f"copied from {self.source}",
                "source_ckpt_dir": str(self.source),
                "sha256": file_sha256(str(self.model_path)),
                "overlays": overlays,
                "history": [],
            }
        )
        logger.info("mass_seg: copied %s and %s from %s into %s", MODEL_FILE, SUMMARY_FILE, self.source, self.folder)

    def require(self) -> Path:
        """The weights file.

        Raises:
            NoModelError: there is none (names the store and the ``--conf ckpt_dir`` that was looked in).
        """
        if not self.model_path.is_file():
            raise NoModelError(
                f"mass_seg has no weights: none in {self.folder} and no {MODEL_FILE} in {self.source}; train the "
                "segmenter with the bundle (seg_train.json) and start the server with --conf ckpt_dir <its ckpt_dir>"
            )
        return self.model_path

    def inference_parser(self, overrides: dict | None = None):
        """The bundle's ``seg_inference`` workflow config with this store as ``ckpt_dir`` (so the recorded
        preprocessing of ``seg_preparation.json`` applies)."""
        return workflow_parser("seg_inference", self.overlays, {"ckpt_dir": str(self.folder), **(overrides or {})})

    def load_network(self, device=None):
        """``network_def`` of the bundle's ``seg.json`` (+ the recorded overlays) with the store's weights, loaded
        strictly (``scripts.common.checkpoint.load_weights``), in eval mode.

        Returns:
            ``(network, parser)``: the parser gives the preprocessing and inferer the weights were trained with.

        Raises:
            NoModelError: no weights; ValueError: weights of another architecture (names the file and tensor).
        """
        use_bundle()
        from scripts.common.checkpoint import load_weights

        path = self.require()
        parser = self.inference_parser()
        device = device or parser.get_parsed_content("device")
        network = load_weights(parser.get_parsed_content("network_def"), str(path), "segmentation model", device)
        return network.to(device).eval(), parser

    def publish(self, ckpt_dir: str | Path, note: str) -> Path:
        """Serve the ``seg_model.pt`` of a finished fine-tuning run: the current version moves to
        ``history/<time>/`` first, then the new weights are copied in atomically.

        Returns:
            The history folder of the replaced version.

        Raises:
            FileNotFoundError: the run wrote no weights.
        """
        from scripts.common.checkpoint import file_sha256

        new = Path(ckpt_dir) / MODEL_FILE
        if not new.is_file():
            raise FileNotFoundError(f"{ckpt_dir}: the fine-tuning run wrote no {MODEL_FILE}")
        with self._lock:
            keep = self.folder / "history" / run_stamp()
            keep.mkdir(parents=True)
            for name in (MODEL_FILE, SUMMARY_FILE, _RECORD):
                if (self.folder / name).is_file():
                    shutil.copy2(self.folder / name, keep / name)
            record = self.record
            if (Path(ckpt_dir) / SUMMARY_FILE).is_file():
                _copy_atomic(Path(ckpt_dir) / SUMMARY_FILE, self.folder / SUMMARY_FILE)
            _copy_atomic(new, self.model_path)
            record.update(origin=note, sha256=file_sha256(str(self.model_path)))
            record["history"] = [*record.get("history", []), str(keep)]
            self._write_record(record)
        return keep
