"""MONAI Label app of the PIG bundle: ``mass_seg`` (auto-segmentation + fine-tuning) and ``pig_synthesis``.

Start (see ``bundle/docs/README.md``, "Serve with MONAI Label")::

    monailabel start_server --app apps/monailabel --studies <folder or DICOMweb URL> \
        --conf models mass_seg,pig_synthesis --conf ckpt_dir <seg ckpt_dir> --host 127.0.0.1 --port 8000

``--conf`` options (all optional):

* ``models``: ``mass_seg``, ``pig_synthesis`` or both, comma-separated (default both);
* ``ckpt_dir``: a bundle segmentation ``ckpt_dir`` (``seg_model.pt`` + ``seg_preparation.json``; default
  ``bundle/models``), copied into ``<app>/model/mass_seg/`` when that is empty;
* ``seg_overlays``: the overlay configs the segmenter was trained with (default: from its run record);
* ``pig_ckpt_dir``: ``guider.pt`` + ``generator.pt`` of ``train.json`` (default ``bundle/models``);
* ``pig_overlays``: their overlay configs (default: from the run record, else ``configs/demo.json``);
* ``store_synthetic_to_pacs``: ``true`` lets ``pig_synthesis`` store its pairs into a DICOMweb datastore.
"""

from __future__ import annotations

import logging
import os
import sys

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

_APP_DIR = os.path.dirname(os.path.realpath(__file__))
if _APP_DIR not in sys.path:  # ``lib`` of this app (MONAI Label's background processes get it on PYTHONPATH)
    sys.path.insert(0, _APP_DIR)

from lib.bundle import BUNDLE_ROOT, resolve_overlays, split_list, use_bundle  # noqa: E402

use_bundle()

from lib.infers.mass_seg import MassSegInfer  # noqa: E402
from lib.model_store import SegModelStore  # noqa: E402
from lib.scoring.pig_synthesis import PigSynthesis, PigSynthesisInfo  # noqa: E402
from lib.trainers.mass_seg import MassSegTrain  # noqa: E402

logger = logging.getLogger(__name__)

#: the models this app serves (``--conf models``).
MODELS = ("mass_seg", "pig_synthesis")


class PIGApp(MONAILabelApp):
    """The app: see the module docstring for its ``--conf`` options.

    Raises:
        ValueError: an unknown name in ``--conf models``.
    """

    def __init__(self, app_dir, studies, conf):
        self.models = split_list(conf.get("models")) or list(MODELS)
        unknown = sorted(set(self.models) - set(MODELS))
        if unknown:
            raise ValueError(f"--conf models: unknown model(s) {unknown}; this app serves {list(MODELS)}")
        default_ckpt = str(BUNDLE_ROOT / "models")
        seg_ckpt = conf.get("ckpt_dir") or default_ckpt
        self.seg_store = None
        if "mass_seg" in self.models:
            self.seg_store = SegModelStore(
                os.path.join(app_dir, "model", "mass_seg"),
                seg_ckpt,
                resolve_overlays(conf.get("seg_overlays"), seg_ckpt),
            )
            if not self.seg_store.model_path.is_file():
                logger.warning("mass_seg: no %s in %s: inference answers 503 until --conf ckpt_dir names a trained "
                               "segmenter", "seg_model.pt", seg_ckpt)  # fmt: skip
        pig_ckpt = conf.get("pig_ckpt_dir") or default_ckpt
        self.pig = None
        if "pig_synthesis" in self.models:
            self.pig = PigSynthesis(
                pig_ckpt,
                resolve_overlays(conf.get("pig_overlays"), pig_ckpt, default=["configs/demo.json"]),
                os.path.join(app_dir, "model", "pig_synthesis", "runs"),
                store_to_pacs=str(conf.get("store_synthetic_to_pacs", "false")).lower() == "true",
            )
            if not self.pig.has_weights():
                logger.warning("pig_synthesis: no guider.pt + generator.pt in %s: its jobs end with an error until "
                               "--conf pig_ckpt_dir names a trained PIG", pig_ckpt)  # fmt: skip
        import monai

        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="PIG: DBT mass segmentation and paired image generation",
            description="Mass lesion auto-segmentation and fine-tuning on raw DBT images, and PIG synthetic "
            "(slice, mask) pairs added as new studies",
            version=monai.__version__,
        )
        # MONAI Label runs every scoring method at start, after training and after each label; pig_synthesis adds
        # studies, so it runs only when asked for (POST /scoring/pig_synthesis)
        self._auto_update_scoring = False

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")):
            return self._init_dicomweb_datastore()
        return super().init_datastore()

    def _init_dicomweb_datastore(self):
        """MONAI Label's DICOMweb datastore with the bundle's SEG writer; no dcmqi download (see ``lib.datastore``)."""
        from dicomweb_client.session_utils import create_session_from_user_pass
        from lib.datastore import BundleDICOMWebDatastore
        from monailabel.config import settings
        from monailabel.datastore.dicom import DICOMwebClientX

        self.studies = self.studies.rstrip("/").strip()
        session = None
        if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
            session = create_session_from_user_pass(
                settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
            )
        client = DICOMwebClientX(
            url=self.studies,
            session=session,
            qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
            wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
            stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
        )
        cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip()
        search = settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER
        if search == {"Modality": "CT"}:  # MONAI Label's default; DBT series are Modality MG
            search = {"Modality": "MG"}
        return BundleDICOMWebDatastore(
            client=client,
            search_filter=search,
            cache_path=cache or None,
            fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
            convert_to_nifti=False,  # the bundle reads the DICOM series itself (DBT multi-frames included)
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        if self.seg_store is not None:
            infers["mass_seg"] = MassSegInfer(self.seg_store)
        if self.pig is not None:
            infers["pig_synthesis"] = PigSynthesisInfo(self.pig)
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        return {"mass_seg": MassSegTrain(self.seg_store)} if self.seg_store is not None else {}

    def init_strategies(self) -> dict[str, Strategy]:
        # MONAI Label's own: a random unlabelled image, or the first unlabelled one in id order
        return {"random": Random(), "first": First()}

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return {"pig_synthesis": self.pig} if self.pig is not None else {}

    def infer(self, request, datastore=None):
        """MONAI Label's ``infer``, with 404 for an unknown model or an image id the datastore does not hold (MONAI
        Label raises a bare exception there, which the server answers with 500)."""
        model = request.get("model")
        if model not in self._infers:
            known = sorted(self._infers)
            raise HTTPException(status_code=404, detail=f"unknown model {model!r}; this app serves {known}")
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image):
            store = datastore or self.datastore()
            if image not in store.list_images():
                raise HTTPException(status_code=404, detail=f"image {image!r} is not in the datastore")
        return super().infer(request, datastore)
