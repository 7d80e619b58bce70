"""``mass_seg`` inference: a raw image in (any format the bundle reads), its mass mask on the image's own grid out.

MONAI Label's ``BundleInferTask`` does not fit this bundle (it reads one config file by a fixed name, strips the
bundle's writer, restores the geometry a second time, loads weights non-strictly and writes a 2-D result as a
wrongly spaced 3-D NIfTI), so this task runs the bundle's own ``seg_inference.json`` steps directly:
``LoadSourced`` (laterality flip, breast crop, window, resize as in training) → ``SliceInferer`` over the U-Net →
softmax → ``RestoreSourced`` (back onto the source grid) → ``SaveSourceMaskd`` (uint8 NIfTI with the source's
affine; a 2-D image gives a 2-D mask).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any

import torch
from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.model_store import NoModelError, SegModelStore

logger = logging.getLogger(__name__)

__all__ = ["LABELS", "MassSegInfer"]

#: the label map of the mask (MONAI Label ``labels``): 0 background, 1 mass.
LABELS = {"mass": 1}


class MassSegInfer(InferTask):
    """Auto-segmentation of mass lesions (``/infer/mass_seg``).

    Request: ``image`` (a datastore image, or the uploaded file MONAI Label saved), optional ``"device"``.
    Returns ``(nifti path, params)``: a uint8 {0, 1} NIfTI with the image's shape and affine (for a 2-D PNG/JPEG the
    geometry ITK and Slicer give it) and ``{"label_names": {"mass": 1}, "model": sha256, "latency_s": ...}``.
    The weights are reloaded when a fine-tuning run replaces them.

    Raises (as HTTP errors, so that the server keeps serving):
        404: the image file does not exist; 400: it cannot be read as an image (names it and the reason);
        503: the app has no weights (says how to provide them).
    """

    def __init__(self, store: SegModelStore) -> None:
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=LABELS,
            dimension=2,
            description="Mass lesion segmentation of DBT slices (PIG bundle U-Net; raw images in their own geometry)",
        )
        self.store = store
        self._lock = threading.Lock()
        self._loaded: tuple[float, int] | None = None
        self._network = self._pre = self._inferer = self._post = None

    def is_valid(self) -> bool:
        return True  # listed without weights too: a request then says how to provide them (503)

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["weights"] = str(self.store.model_path) if self.store.model_path.is_file() else None
        return info

    def _components(self):
        """The network and the bundle's transforms for the current weights (reloaded when the file changes)."""
        path = self.store.require()
        stat = os.stat(path)
        key = (stat.st_mtime, stat.st_size)
        with self._lock:
            if self._loaded != key:
                network, parser = self.store.load_network()
                pre = parser.get_parsed_content("preprocessing")
                inferer = parser.get_parsed_content("inferer")
                post = [parser.get_parsed_content(f"postprocessing#transforms#{i}") for i in (0, 1)]  # softmax, restore
                self._network, self._pre, self._inferer, self._post = network, pre, inferer, post
                self._device = next(network.parameters()).device
                self._sha256 = self.store.record.get("sha256")
                self._loaded = key
                logger.info("mass_seg: loaded %s", path)
            return self._network, self._pre, self._inferer, self._post

    def __call__(self, request) -> tuple[str, dict]:
        from scripts.seg.inference import SaveSourceMaskd

        start = time.time()
        image = str(request.get("image") or "")
        if not image or not os.path.exists(image):
            raise HTTPException(status_code=404, detail=f"image {image or '(none)'} not found")
        try:
            network, pre, inferer, post = self._components()
        except NoModelError as e:
            raise HTTPException(status_code=503, detail=str(e)) from e
        uploaded = os.path.dirname(os.path.abspath(image)) == os.path.abspath(tempfile.gettempdir())
        name = "the uploaded file" if uploaded else os.path.basename(image)
        try:
            d = pre({"image": image})
        except Exception as e:  # an unreadable or corrupt file: the reader's message names the problem
            cause = e
            while cause.__cause__ is not None:  # MONAI wraps it in "applying transform ..."
                cause = cause.__cause__
            raise HTTPException(status_code=400, detail=f"{name}: cannot be read as an image: {cause}") from e
        with torch.inference_mode():
            logits = inferer(d["image"][None].to(self._device), network)[0]
        d["pred"] = logits.float().cpu()
        for t in post:
            d = t(d)
        out_dir = tempfile.mkdtemp(prefix="mass_seg_")
        try:
            d = SaveSourceMaskd(keys="pred", output_dir=out_dir, output_formats="nifti")(d)
            fd, result = tempfile.mkstemp(suffix=".nii.gz", prefix="mass_seg_")
            os.close(fd)
            shutil.move(d["written"][0], result)  # MONAI Label deletes the result file after sending it
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        params = {
            "label_names": LABELS,
            "model": self._sha256,
            "lesion_pixels": int(d["pred"].sum()),
            "latency_s": round(time.time() - start, 3),
        }
        return result, params
