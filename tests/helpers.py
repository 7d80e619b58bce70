"""How the tests run the bundle: ``python -m monai.bundle run`` of a workflow's configs, and its merged config parser.

The config file lists come from ``scripts.common.configs`` (the layers, then the workflow's file), so the tests run
exactly what the documented commands run. Overlays default to the tiny ones: ``smoke.json`` for the generator bundle,
``seg_smoke.json`` for the segmenter.

Every run is a process of its own, started by ``scripts.common.launch.run_module`` with the ``forkserver`` launcher
(a fork of a server that imported torch, MONAI and the bundle once: the imports cost about 9 s per interpreter on
these machines, more than most smoke runs). ``PIG_TEST_LAUNCHER=subprocess`` starts a new interpreter instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from scripts.common.configs import config_files, meta_file
from scripts.common.launch import run_module

#: the launcher of every test run (``scripts.common.launch.LAUNCHERS``).
LAUNCHER = os.environ.get("PIG_TEST_LAUNCHER", "forkserver")

TESTS = Path(__file__).resolve().parent
BUNDLE = TESTS.parent / "bundle"
CONFIGS = BUNDLE / "configs"


def smoke_overlay(workflow: str) -> str:
    """The tiny overlay of ``workflow``'s family (``configs/seg_smoke.json`` or ``configs/smoke.json``)."""
    return "configs/seg_smoke.json" if workflow.startswith("seg_") else "configs/smoke.json"


def bundle_command(run_id: str, workflow: str, *args, overlays: Sequence[str] | None = None) -> list[str]:
    """The ``python -m monai.bundle run`` command line of ``workflow`` (+ ``overlays``, default the smoke one)."""
    files = config_files(workflow, [smoke_overlay(workflow)] if overlays is None else list(overlays))
    return [
        sys.executable, "-m", "monai.bundle", "run", run_id, "--meta_file", meta_file(workflow),
        "--config_file", repr(files), "--logging_file", str(CONFIGS / "logging.conf"), *map(str, args),
    ]  # fmt: skip


def run_python_module(
    module: str, args: Sequence, cwd: Path = BUNDLE, check: bool = True, one_thread: bool = False, timeout: int = 900
) -> subprocess.CompletedProcess:
    """``python -m module *args`` in ``cwd`` (a process of its own, :data:`LAUNCHER`), output captured as text;
    ``tests/`` is on its PYTHONPATH (for the test-only handlers of ``reliability_helpers``).

    Args:
        one_thread: pin torch to one thread (bit-identical runs need the same thread count).
        check: raise AssertionError with the output's tail when the run fails.
    """
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if one_thread:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        code = run_module(module, [str(a) for a in args], cwd, out, err, env=env, launcher=LAUNCHER, timeout=timeout)
        stdout, stderr = out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")
    proc = subprocess.CompletedProcess([sys.executable, "-m", module, *map(str, args)], code, stdout, stderr)
    if check and code != 0:
        raise AssertionError(f"{' '.join(proc.args)} failed (exit {code}):\n{stdout[-3000:]}\n{stderr[-6000:]}")
    return proc


def bundle_run(
    run_id: str,
    workflow: str,
    *args,
    overlays: Sequence[str] | None = None,
    check: bool = True,
    one_thread: bool = False,
    cwd: Path = BUNDLE,
) -> subprocess.CompletedProcess:
    """Run ``workflow``'s ``run_id`` from ``bundle/`` as a user does (``python -m monai.bundle run``, see
    :func:`run_python_module`)."""
    cmd = bundle_command(run_id, workflow, *args, overlays=overlays)
    return run_python_module("monai.bundle", cmd[3:], cwd=cwd, check=check, one_thread=one_thread)


def parser(workflow: str, *overlays: str, **overrides) -> ConfigParser:
    """MONAI ``ConfigParser`` of ``workflow``'s configs + ``overlays`` (names in ``configs/``) + ``overrides``."""
    p = ConfigParser()
    p.read_config(config_files(workflow, [f"configs/{o}" for o in overlays]))
    for k, v in overrides.items():
        p[k] = v
    return p


def cause(excinfo) -> BaseException:
    """MONAI's config parser re-raises an expression's error as RuntimeError ``from`` it: the original error."""
    e = excinfo.value
    while isinstance(e, RuntimeError) and e.__cause__ is not None:
        e = e.__cause__
    return e


def weights(path: Path) -> dict:
    """A ``.pt`` file's content, read as the bundle reads it (``weights_only=True``, on the CPU)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def tiny_unet(in_channels: int = 2, channels: tuple[int, ...] = (8, 8), seed: int = 0):
    """A seeded, tiny MONAI ``DiffusionModelUNet`` (one residual block per level, no attention, 1 output channel;
    inputs of 16 px and up with the default two levels): the one factory of the unit tests' networks."""
    from monai.networks.nets import DiffusionModelUNet

    torch.manual_seed(seed)
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=1,
        channels=channels,
        attention_levels=(False,) * len(channels),
        num_res_blocks=1,
        norm_num_groups=8,
        num_head_channels=8,
    )


def write_dicom(path: Path, frames, photometric: str = "MONOCHROME2", **tags) -> Path:
    """A minimal Breast Tomosynthesis Image Storage DICOM file (multi-frame when ``frames`` is 3-D) with pydicom; bit
    depth and signedness follow ``frames.dtype``; extra ``tags`` are set on the dataset."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.13.1.3"  # Breast Tomosynthesis Image Storage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.set_pixel_data(frames, photometric_interpretation=photometric, bits_stored=8 * frames.dtype.itemsize)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dbt(
    path: Path,
    frames,
    photometric: str = "MONOCHROME2",
    pixel_spacing=(0.1, 0.085),
    slice_thickness: float = 1.0,
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin=(0.0, 0.0, 0.0),
    step_mm: float = 1.0,
    windows=None,
    rescales=None,
    laterality: str | None = "R",
    **tags,
) -> Path:
    """An enhanced Breast Tomosynthesis Image Storage file (:func:`write_dicom`) with its functional groups.

    ``frames`` ``(S, H, W)``. Shared group: Pixel Measures (``pixel_spacing`` = (between rows, between columns) mm,
    ``slice_thickness``), Plane Orientation (``orientation``), Frame Anatomy (``laterality``). Per frame ``k``: Plane
    Position ``origin + k × step_mm × normal`` (normal = IOP[:3] × IOP[3:]), and when given a Frame VOI LUT item
    (``windows[k]`` = ``(centre, width, function)``, function ``None`` leaves VOILUTFunction out) and a Pixel Value
    Transformation item (``rescales[k]`` = ``(slope, intercept)``). Also sets Frame of Reference, Study and Series
    UIDs and ``tags``."""
    import numpy as np
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    def item(**values):
        ds = Dataset()
        for key, value in values.items():
            setattr(ds, key, value)
        return ds

    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    shared = item(
        PixelMeasuresSequence=Sequence([item(PixelSpacing=list(pixel_spacing), SliceThickness=slice_thickness)]),
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[float(v) for v in orientation])]),
    )
    if laterality:
        shared.FrameAnatomySequence = Sequence([item(FrameLaterality=laterality)])
    per_frame = []
    for k in range(frames.shape[0]):
        position = np.asarray(origin, float) + k * step_mm * normal
        ipp = [round(float(v), 6) for v in position]  # DS: at most 16 characters
        group = item(PlanePositionSequence=Sequence([item(ImagePositionPatient=ipp)]))
        if windows is not None:
            centre, width, function = windows[k]
            voi = item(WindowCenter=centre, WindowWidth=width)
            if function is not None:
                voi.VOILUTFunction = function
            group.FrameVOILUTSequence = Sequence([voi])
        if rescales is not None:
            slope, intercept = rescales[k]
            group.PixelValueTransformationSequence = Sequence(
                [item(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")]
            )
        per_frame.append(group)
    defaults = {
        "FrameOfReferenceUID": generate_uid(),
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "Modality": "MG",
    }
    return write_dicom(
        path, frames, photometric, SharedFunctionalGroupsSequence=Sequence([shared]),
        PerFrameFunctionalGroupsSequence=Sequence(per_frame), **{**defaults, **tags},
    )  # fmt: skip
