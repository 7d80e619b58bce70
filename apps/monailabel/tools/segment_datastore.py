"""Drive a running app with MONAI Label's own client (the REST API Slicer uses) and fetch ``mass_seg`` masks.

Every image of the server's datastore (or those named) is segmented through ``/infer/mass_seg``; each mask is saved
as ``<out>/<image id>_pred.nii.gz``, the names ``python -m scripts.seg.score --pred_dir`` reads, so that the masks
the server returns can be scored on each source's own grid against the dataset's reference masks::

    python apps/monailabel/tools/segment_datastore.py --server http://127.0.0.1:8000 --out /tmp/pred \
        [--images id1,id2]
    cd bundle && python -m scripts.seg.score --dataset_dir <dataset> --pred_dir /tmp/pred [--folds <ckpt>/folds.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from monailabel.client import MONAILabelClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="the server URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--out", required=True, help="folder for <image id>_pred.nii.gz (existing masks are kept)")
    parser.add_argument("--images", default=None, help="comma-separated image ids (default: every datastore image)")
    args = parser.parse_args(argv)
    client = MONAILabelClient(args.server, tmpdir=tempfile.mkdtemp(prefix="mass_seg_client_"))
    ids = args.images.split(",") if args.images else sorted(client.datastore()["objects"])
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    for n, image_id in enumerate(ids, 1):
        target = os.path.join(args.out, f"{image_id}_pred.nii.gz")
        if os.path.exists(target):
            print(f"[{n}/{len(ids)}] {image_id}: kept {target}")
            continue
        path, params = client.infer("mass_seg", image_id, {})
        shutil.move(path, target)
        pixels, latency = params.get("lesion_pixels"), params.get("latency_s")
        print(f"[{n}/{len(ids)}] {image_id}: {pixels} lesion pixel(s), {latency} s")
    print(f"{len(ids)} image(s) in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
