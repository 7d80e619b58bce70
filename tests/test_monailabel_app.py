"""The MONAI Label app (``apps/monailabel``) as Slicer drives it: a real server on 127.0.0.1 and a free port, started
with ``monailabel start_server``, driven by MONAI Label's own client (``monailabel.client``, the REST API of the
Slicer extension), stopped by its PID.

The served segmenter is the bundle's ``seg_smoke.json`` U-Net fitted in the fixture to mark what the slice window
maps above 0.6 (the test images' lesion is their brightest structure), so that a mask that comes back flipped,
transposed or shifted fails the Dice check: the network is trivial, the round trip through the app is what is tested.
The generator is a smoke-trained PIG (``smoke.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import bundle_run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "apps" / "monailabel"
BUNDLE = REPO / "bundle"
SIZE = 64  # the fitted segmenter's image_size (slice mode)

try:
    from monailabel.client import MONAILabelClient
    from monailabel.client.client import MONAILabelClientException
except Exception as e:  # noqa: BLE001 - the import itself fails without the pydicom 3 hook
    if os.environ.get("CI"):
        raise RuntimeError(f"MONAI Label is not importable in CI ({e}): see the README's MONAI Label install") from e
    pytest.skip(f"MONAI Label not installed ({e})", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_of(err: Exception) -> int:
    """The HTTP status in a ``MONAILabelClientException`` message ("Status: 404; Response: ...")."""
    return int(str(err.msg).split("Status: ")[1].split(";")[0])


def raw_jpeg(path: Path, side: str, lesion: tuple[int, int], seed: int) -> np.ndarray:
    """A non-square raw JPEG slice (90 × 70, breast against ``side``, bright lesion disc); returns its lesion mask."""
    from PIL import Image
    from test_data_source import raw_slice

    image, truth = raw_slice(side, lesion, seed=seed)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=98, dpi=(100, 100))
    return truth


def fit_threshold_unet(ckpt: Path) -> None:
    """``seg_model.pt`` + ``seg_preparation.json``: the seg_smoke U-Net fitted to ``x > 0.6`` on random bright discs
    in [-1, 1] (300 Adam steps, about 10 s on one core), recorded as a 64-px slice-mode model."""
    sys.path.insert(0, str(BUNDLE))
    from helpers import parser

    torch.manual_seed(0)
    net = parser("seg_inference", "seg_smoke.json").get_parsed_content("network_def")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    rr, cc = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    for _ in range(300):
        x = torch.rand(8, 1, SIZE, SIZE) * 1.2 - 1.0  # background and tissue below 0.2
        for k in range(8):
            r0, c0, rad = torch.randint(8, SIZE - 8, (2,)).tolist() + [int(torch.randint(3, 10, (1,)))]
            x[k, 0][(rr - r0) ** 2 + (cc - c0) ** 2 <= rad**2] = 0.7 + 0.3 * torch.rand(1)
        y = (x > 0.6).long()[:, 0]
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ckpt.mkdir(parents=True)
    torch.save(net.state_dict(), ckpt / "seg_model.pt")
    params = {"image_size": SIZE, "crop_mode": "slice", "window_percentiles": [0.5, 99.5]}
    (ckpt / "seg_preparation.json").write_text(json.dumps({"image_size": SIZE, "params": params, "spacing_mm": None}))


class Server:
    """``monailabel start_server`` of a copy of the app (its ``model/`` and ``logs/`` land in the copy)."""

    def __init__(self, root: Path, studies: str, *conf: str) -> None:
        self.app = root / "app"
        if not self.app.exists():
            shutil.copytree(APP, self.app, ignore=shutil.ignore_patterns("model", "logs", "bin", "__pycache__"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("monailabel")
        cmd = [str(exe), "start_server", "--app", str(self.app), "--studies", studies, *conf,
               "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        env = {**os.environ, "PIG_BUNDLE": str(BUNDLE), "PYTHONWARNINGS": "ignore"}
        self.log = root / f"server-{self.port}.log"
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)  # fmt: skip
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(self.url + "/info/", timeout=5)
                break
            except OSError as err:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise AssertionError(f"server did not start:\n{self.log.read_text()[-4000:]}") from err
                time.sleep(0.5)
        self.client = MONAILabelClient(self.url, tmpdir=str(root / f"client-{self.port}"))

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait_task(self, kind: str, timeout: float = 600) -> dict:
        """Poll ``GET /<kind>/`` (train or scoring) until the latest task has ended."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            code, task = self.request("GET", f"/{kind}/")
            if code == 200 and task and task.get("status") not in ("SUBMITTED", "RUNNING"):
                return task
            time.sleep(1)
        raise AssertionError(f"{kind} task still running after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and the background tasks it started
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder datastore of two raw non-square JPEG slices, the fitted segmenter and a smoke PIG, served."""
    root = tmp_path_factory.mktemp("monailabel")
    studies = root / "studies"
    studies.mkdir()
    truths = {
        "slice_a": raw_jpeg(studies / "slice_a.jpg", "right", (30, 52), seed=0),
        "slice_b": raw_jpeg(studies / "slice_b.jpg", "left", (60, 17), seed=1),
    }
    seg_ckpt = root / "seg_ckpt"
    fit_threshold_unet(seg_ckpt)
    pig_ckpt = root / "pig_ckpt"
    bundle_run("training", "train", "--ckpt_dir", str(pig_ckpt), "--cache_dir", str(root / "cache"), one_thread=True)
    server = Server(root, str(studies), "--conf", "models", "mass_seg,pig_synthesis", "--conf", "ckpt_dir",
                    str(seg_ckpt), "--conf", "seg_overlays", "configs/seg_smoke.json", "--conf", "pig_ckpt_dir",
                    str(pig_ckpt))  # fmt: skip
    try:
        yield server, studies, truths, seg_ckpt
    finally:
        server.stop()


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def test_info_lists_both_models(served):
    server, *_ = served
    info = server.get("/info/")
    assert set(info["models"]) == {"mass_seg", "pig_synthesis"}
    assert info["models"]["mass_seg"]["type"] == "segmentation" and info["models"]["mass_seg"]["labels"] == {"mass": 1}
    assert set(info["models"]["pig_synthesis"]["config"]) >= {"num_pairs", "seed", "ddim_steps"}
    assert info["models"]["pig_synthesis"]["weights"] is True and info["models"]["mass_seg"]["weights"]
    assert "mass_seg" in info["trainers"] and {"random", "first"} <= set(info["strategies"])
    assert "pig_synthesis" in info["scoring"]
    # the app's own model folder: the bundle's configs and the user's ckpt_dir are never written
    assert (server.app / "model" / "mass_seg" / "seg_model.pt").is_file()


def test_inference_on_a_raw_non_square_slice_returns_the_mask_in_its_geometry(served):
    from scripts.data.readers import _read_itk, read_array

    server, studies, truths, _ = served
    for image_id, truth in truths.items():
        path, params = server.client.infer("mass_seg", image_id, {})
        mask, _, info = read_array(path)
        src = studies / f"{image_id}.jpg"
        assert mask.shape == (1, *Image_shape(src)) and set(np.unique(mask)) <= {0, 1}
        assert np.allclose(info["affine_ras"], _read_itk(src)[2]["affine_ras"])  # the geometry Slicer gives the JPEG
        assert dice(mask[0], truth) > 0.8, (image_id, dice(mask[0], truth))  # the lesion where it was drawn
        assert params["label_names"] == {"mass": 1}


def Image_shape(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


def test_an_uploaded_file_is_segmented_too(served, tmp_path):
    from scripts.data.readers import read_array

    server, studies, truths, _ = served
    upload = tmp_path / "upload.jpg"
    shutil.copyfile(studies / "slice_a.jpg", upload)
    path, _ = server.client.infer("mass_seg", "", {}, file=str(upload))
    assert dice(read_array(path)[0][0], truths["slice_a"]) > 0.8


def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(served, tmp_path):
    server, studies, *_ = served
    with pytest.raises(MONAILabelClientException) as e:
        server.client.infer("no_such_model", "slice_a", {})
    assert status_of(e.value) == 404 and "unknown model" in e.value.msg
    with pytest.raises(MONAILabelClientException) as e:
        server.client.infer("mass_seg", "no_such_image", {})
    assert status_of(e.value) == 404 and "not in the datastore" in e.value.msg
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG" * 10)
    with pytest.raises(MONAILabelClientException) as e:
        server.client.infer("mass_seg", "", {}, file=str(corrupt))
    assert status_of(e.value) == 400 and "the uploaded file: cannot be read as an image" in e.value.msg
    assert "applying transform" not in e.value.msg  # the reader's own message, not MONAI's wrapper
    code, body = server.request("POST", "/infer/pig_synthesis?image=slice_a")
    assert code == 400 and "POST /scoring/pig_synthesis" in body["detail"]
    assert server.get("/info/")["models"]  # still serving
    server.client.infer("mass_seg", "slice_a", {})


def test_two_concurrent_inferences_succeed(served):
    from scripts.data.readers import read_array

    server, *_ = served
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: server.client.infer("mass_seg", i, {}), ["slice_a", "slice_a"]))
    masks = [read_array(path)[0] for path, _ in results]
    assert np.array_equal(masks[0], masks[1]) and masks[0].any()


def test_next_sample_strategies(served):
    server, *_ = served
    for strategy in ("first", "random"):
        sample = server.client.next_sample(strategy, {})
        assert sample["id"] in {"slice_a", "slice_b"}, sample


def test_checkpoint_loads_strictly_as_the_app_loads_it(served, tmp_path):
    sys.path.insert(0, str(APP))
    from lib.model_store import SegModelStore

    server, _, _, seg_ckpt = served
    store = SegModelStore(server.app / "model" / "mass_seg", seg_ckpt, ["configs/seg_smoke.json"])
    network, _ = store.load_network("cpu")
    state = torch.load(store.model_path, weights_only=True)
    assert network.state_dict().keys() == state.keys()  # no missing, no unexpected keys
    # a file with one tensor more (or less) is refused by the same loader, naming the file
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({**state, "extra.weight": torch.zeros(1)}, bad / "seg_model.pt")
    shutil.copyfile(seg_ckpt / "seg_preparation.json", bad / "seg_preparation.json")
    with pytest.raises(ValueError, match="seg_model.pt"):
        SegModelStore(tmp_path / "store", bad, ["configs/seg_smoke.json"]).load_network("cpu")


def test_training_from_datastore_labels_changes_the_weights(served, tmp_path):
    server, studies, truths, _ = served
    store = server.app / "model" / "mass_seg"
    before = torch.load(store / "seg_model.pt", weights_only=True)
    record_before = json.loads((store / "app_model.json").read_text())
    # the label Slicer submits: the mask on the image's grid (here the one inference returns, as a NIfTI)
    path, _ = server.client.infer("mass_seg", "slice_b", {})
    server.client.save_label("slice_b", path, tag="final")
    assert server.client.datastore()["objects"]["slice_b"]["labels"].get("final")
    code, _ = server.request("POST", "/train/mass_seg", {"max_epochs": 2, "epoch_length": 2, "learning_rate": 0.01})
    assert code == 200
    task = server.wait_task("train")
    assert task["status"] == "DONE", task
    after = torch.load(store / "seg_model.pt", weights_only=True)
    assert after.keys() == before.keys()
    assert any(not torch.equal(after[k], before[k]) for k in before)
    record = json.loads((store / "app_model.json").read_text())
    assert record["sha256"] != record_before["sha256"] and "fine-tuned" in record["origin"]
    kept = Path(record["history"][-1]) / "seg_model.pt"  # the replaced weights are kept
    assert all(torch.equal(torch.load(kept, weights_only=True)[k], before[k]) for k in before)
    server.client.infer("mass_seg", "slice_a", {})  # the new weights are served


def test_synthesis_adds_pairs_as_new_synthetic_studies_and_cancel_adds_none(served):
    from scripts.data.readers import read_array

    server, *_ = served
    before = set(server.client.datastore()["objects"])
    code, _ = server.request("POST", "/scoring/pig_synthesis", {"num_pairs": 2, "seed": 3, "ddim_steps": 2})
    assert code == 200
    task = server.wait_task("scoring")
    assert task["status"] == "DONE", task
    assert any("generated 2/2 samples" in line for line in task["details"])  # the progress lines
    objects = server.client.datastore()["objects"]
    added = sorted(set(objects) - before)
    assert added == ["pig-s3-00000", "pig-s3-00001"]
    for image_id in added:
        obj = objects[image_id]
        info = obj["image"]["info"]
        assert info["synthetic"] is True and info["seed"] == 3 and info["ddim_steps"] == 2 and info["num_pairs"] == 2
        label = obj["labels"]["final"]
        assert label["info"]["synthetic"] is True
    # the pairs read back as any datastore image and label
    path, _ = server.client.infer("mass_seg", added[0], {})
    assert read_array(path)[0].shape == (1, 32, 32)
    # cancel: a long run stopped while it runs adds nothing
    count = len(objects)
    code, _ = server.request("POST", "/scoring/pig_synthesis", {"num_pairs": 5000, "seed": 4, "ddim_steps": 2})
    assert code == 200
    deadline = time.time() + 120
    while server.request("GET", "/scoring/")[1].get("status") != "RUNNING" and time.time() < deadline:
        time.sleep(0.2)
    code, task = server.request("DELETE", "/scoring/")
    assert code == 200 and task["status"] == "STOPPED"
    time.sleep(1)
    assert len(server.client.datastore()["objects"]) == count


def test_pydicom3_alias_is_what_lets_monailabel_import():
    code = "import monailabel.app"
    env = {**os.environ, "PIG_NO_PYDICOM3_ALIAS": "1"}
    proc = subprocess.run([sys.executable, "-c", "import pydicom_seg"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "pydicom._storage_sopclass_uids" in proc.stderr  # the upstream bug
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]  # the hook of lib/pydicom3_compat.py fixes it
    proc = subprocess.run(
        [sys.executable, "-c", "import pydicom.uid, pydicom._storage_sopclass_uids as m; "
         "assert m is pydicom.uid and m.SegmentationStorage == '1.2.840.10008.5.1.4.1.1.66.4'"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_no_weights_is_a_clear_503(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    raw_jpeg(studies / "s.jpg", "right", (30, 52), seed=0)
    server = Server(tmp_path, str(studies), "--conf", "models", "mass_seg", "--conf", "ckpt_dir",
                    str(tmp_path / "empty"))  # fmt: skip
    try:
        assert set(server.get("/info/")["models"]) == {"mass_seg"}
        with pytest.raises(MONAILabelClientException) as e:
            server.client.infer("mass_seg", "s", {})
        assert status_of(e.value) == 503 and "--conf ckpt_dir" in e.value.msg
    finally:
        server.stop()
