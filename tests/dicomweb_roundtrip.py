"""The DICOMweb round trip of the MONAI Label app, run inside a network namespace of its own (see
``test_monailabel_dicomweb.py``): Orthanc + DICOMweb on 127.0.0.1, a synthetic DBT study stored into it, the app
serving it (``--studies http://127.0.0.1:PORT/dicom-web``), ``mass_seg`` through MONAI Label's client, the mask
submitted as the final label (the app writes a DICOM SEG with highdicom and stores it with STOW-RS), and the SEG read
back from Orthanc with the bundle's reader.

Usage: ``python tests/dicomweb_roundtrip.py <work folder>``; prints one JSON line, exit 0 when every check passed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS), str(TESTS.parent / "bundle")]

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError as err:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{url} did not answer:\n{log.read_text()[-3000:]}") from err
            time.sleep(0.3)


def start_orthanc(work: Path) -> tuple[subprocess.Popen, str]:
    from test_monailabel_app import free_port

    port = free_port()
    config = {
        "Name": "pig-test", "StorageDirectory": str(work / "orthanc-db"), "IndexDirectory": str(work / "orthanc-db"),
        "HttpPort": port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomServerEnabled": False, "Plugins": [PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": "127.0.0.1"},
    }  # fmt: skip
    (work / "orthanc.json").write_text(json.dumps(config))
    log = work / "orthanc.log"
    proc = subprocess.Popen(["Orthanc", str(work / "orthanc.json")], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait(f"http://127.0.0.1:{port}/system", proc, log)
    return proc, f"http://127.0.0.1:{port}"


def main(work: Path) -> dict:
    import pydicom
    from dicomweb_client.api import DICOMwebClient
    from helpers import write_dbt
    from test_data_source import raw_slice
    from test_monailabel_app import Server, dice, fit_threshold_unet

    from scripts.data.dicom import read_dicom_datasets
    from scripts.data.readers import read_array
    from scripts.export import read_dicom_seg

    work.mkdir(parents=True, exist_ok=True)
    orthanc, base = start_orthanc(work)
    server = None
    try:
        # a 3-frame DBT multi-frame (breast on the right, a bright lesion on frames 0 and 2)
        image, truth = raw_slice("right", (30, 52))
        frames = np.stack([image, np.full_like(image, 7.0), image]).astype(np.uint16)
        truth3 = np.stack([truth, np.zeros_like(truth), truth])
        src = write_dbt(work / "dbt.dcm", frames, PatientID="PIG-TEST", PatientName="TEST^DBT")
        web = DICOMwebClient(url=f"{base}/dicom-web")
        web.store_instances([pydicom.dcmread(src)])
        series = pydicom.dcmread(src).SeriesInstanceUID
        seg_ckpt = work / "seg_ckpt"
        fit_threshold_unet(seg_ckpt)
        server = Server(work, f"{base}/dicom-web", "--conf", "models", "mass_seg", "--conf", "ckpt_dir",
                        str(seg_ckpt), "--conf", "seg_overlays", "configs/seg_smoke.json")  # fmt: skip
        sample = server.client.next_sample("first", {})  # how Slicer finds the images of a DICOMweb datastore
        assert sample["id"] == series, sample
        path, _ = server.client.infer("mass_seg", series, {})
        mask = read_array(path)[0]
        assert mask.shape == frames.shape, (mask.shape, frames.shape)
        d = dice(mask, truth3)
        assert d > 0.8, d
        server.client.save_label(series, path, tag="final")
        segs = web.search_for_series(search_filters={"Modality": "SEG"})
        assert len(segs) == 1, segs
        seg_series = segs[0]["0020000E"]["Value"][0]
        study = segs[0]["0020000D"]["Value"][0]
        instances = web.retrieve_series(study, seg_series)
        seg_file = work / "stored_seg.dcm"
        instances[0].save_as(seg_file)
        back = read_dicom_seg(seg_file, read_dicom_datasets(str(src)))
        assert np.array_equal(back, mask), "the stored SEG differs from the returned mask"
        server.stop()
        server = None
        stored = synthesis_into_the_pacs(work, base, web)
        return {"ok": True, "dice": round(d, 4), "seg_series": seg_series, "study": study, "synthetic": stored}
    finally:
        if server is not None:
            server.stop()
        orthanc.terminate()
        orthanc.wait(20)


def synthesis_into_the_pacs(work: Path, base: str, web) -> str:
    """``pig_synthesis`` over the PACS: refused unless the server was started with ``store_synthetic_to_pacs``; with
    it, a pair is stored as a Secondary Capture slice marked Synthetic Data YES plus its SEG. Returns the slice's SOP
    Instance UID."""
    from helpers import bundle_run
    from test_monailabel_app import Server

    pig_ckpt = work / "pig_ckpt"
    bundle_run("training", "train", "--ckpt_dir", str(pig_ckpt), "--cache_dir", str(work / "cache"), one_thread=True)
    before = {s["0020000E"]["Value"][0] for s in web.search_for_series()}
    for opt_in in ("false", "true"):
        server = Server(work / f"pacs-{opt_in}", f"{base}/dicom-web", "--conf", "models", "pig_synthesis", "--conf",
                        "pig_ckpt_dir", str(pig_ckpt), "--conf", "store_synthetic_to_pacs", opt_in)  # fmt: skip
        try:
            code, _ = server.request("POST", "/scoring/pig_synthesis", {"num_pairs": 1, "seed": 5, "ddim_steps": 2})
            assert code == 200, code
            task = server.wait_task("scoring")
        finally:
            server.stop()
        added = {s["0020000E"]["Value"][0] for s in web.search_for_series()} - before
        if opt_in == "false":
            assert task["status"] == "ERROR" and any("opt-in" in line for line in task["details"]), task
            assert not added, added
    assert task["status"] == "DONE", task
    assert len(added) == 2, added  # the synthetic slice's series and its SEG's
    images = [i for s in added for i in web.search_for_instances(search_filters={"SeriesInstanceUID": s})]
    metas = [web.retrieve_instance_metadata(i["0020000D"]["Value"][0], i["0020000E"]["Value"][0],
                                            i["00080018"]["Value"][0]) for i in images]  # fmt: skip
    modalities = sorted(m["00080060"]["Value"][0] for m in metas)
    assert modalities == ["OT", "SEG"], modalities
    slice_meta = next(m for m in metas if m["00080060"]["Value"][0] == "OT")
    assert slice_meta["0008001C"]["Value"] == ["YES"], slice_meta.get("0008001C")  # Synthetic Data
    return slice_meta["00080018"]["Value"][0]


if __name__ == "__main__":
    try:
        result = main(Path(sys.argv[1]))
    except Exception as e:  # noqa: BLE001 - reported to the test as one line
        import traceback

        traceback.print_exc()
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
    print(json.dumps(result))
