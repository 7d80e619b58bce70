"""How many DDIM steps PIG needs: sample one trained PIG at several step counts and evaluate each at the same N.

Run from ``bundle/`` after training PIG (``train.json``)::

    python -m scripts.experiments.steps_sweep --work_dir runs/steps --ckpt_dir runs/demo --overlay configs/demo.json \\
        --steps 25,50,100,256 --num_samples 128 --seg_model_path runs/seg/seg_model.pt

Stages (``W = --work_dir``; each a ``python -m monai.bundle run`` subprocess,
:func:`scripts.experiments.stages.run_stage`, skipped on a rerun once complete):

1. ``W/samples/steps_<S>``: ``inference.json`` with ``num_inference_steps = S``, the same seed and ``--num_samples`` N
   for every S, so each setting starts its pairs from the same noise (``scripts.pig.sample_noise``);
2. ``W/eval/steps_<S>``: ``evaluate.json`` (workflow ``evaluating``) against the same real set with the same
   extractor (default ``seg_unet_encoder`` with ``--seg_model_path``: in-domain and needs no download);
3. ``W/table.md``, ``table.csv``, ``config.json`` and ``W/steps_kid.png`` (never overwritten: ``free_names``).

**When is a setting as good as the reference** (``--reference_steps``, default the largest S)? KID is the main number;
its resolution at this N is the spread of the real-half control (two patient-wise halves of the real set: what a
perfect generator would score, ± the standard deviation over KID subsets). A setting counts as equal to the reference
when ``|KID(S) − KID(ref)|`` is within that standard deviation; the table says so in its last column.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from scripts.common.checkpoint import file_sha256
from scripts.common.configs import config_files, meta_file
from scripts.common.runinfo import environment
from scripts.evaluation.report import SMALL_SAMPLE_NOTE
from scripts.experiments import stages as st
from scripts.experiments.compare_generators import format_cell

__all__ = ["COLUMNS", "parse_args", "sweep_rows", "format_table", "plot_sweep", "main"]

logger = logging.getLogger("steps_sweep")

#: ids the runner sets per stage; ``--overrides`` may not set them.
RUNNER_IDS = ("ckpt_dir", "output_dir", "generated_dir", "eval_dir", "num_samples", "num_inference_steps",
              "dataset_dir", "cache_dir", "seed", "fid_extractor", "fid_weights_path", "seg_model_path")  # fmt: skip
#: Markdown columns: (header, row key).
COLUMNS = (
    ("DDIM steps", "steps"), ("N", "n"), ("KID ↓ (mean ± std)", "kid"), ("FID ↓", "fid"),
    ("KID, N-matched vs real half A", "kid_subset"), ("pair consistency Dice ↑", "pair_dice"),
    ("W₁ area (px)", "w_area_px"), ("W₁ components", "w_components"), ("mask Dice ↓ (diversity)", "mask_dice"),
    ("s / pair", "s_per_pair"), ("ΔKID vs reference (absolute)", "delta_kid"), ("equal to reference?", "equal"),
)  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the runner's command line (see ``--help``).

    Raises:
        SystemExit: invalid options: fewer than two step counts, a count < 1, N < 2, a reference not in ``--steps``,
            or ``--overrides`` setting a runner-owned id.
    """
    p = argparse.ArgumentParser(prog="python -m scripts.experiments.steps_sweep",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Sample one trained PIG at several DDIM step counts and evaluate each "
                                "at the same N; writes a table and a KID-vs-steps PNG. Run from bundle/.")  # fmt: skip
    p.add_argument("--work_dir", required=True, help="all stages and the table go here; rerun to resume")
    p.add_argument("--ckpt_dir", required=True, help="a finished PIG training (guider.pt, generator.pt)")
    p.add_argument("--dataset_dir", default=None, help="the training's data (Duke box table / folder); omit: phantom")
    p.add_argument("--cache_dir", default=str(st.BUNDLE_ROOT / "cache"), help="prepared slices (default bundle/cache)")
    p.add_argument("--overlay", default="configs/demo.json", help="the overlay PIG was trained with")
    p.add_argument("--overrides", type=st.json_dict, default={}, help="JSON ids -> values for every stage")
    p.add_argument("--eval_overrides", type=st.json_dict, default={}, help="JSON ids for evaluate.json only")
    p.add_argument("--steps", default="25,50,100,256", help="comma-separated DDIM step counts")
    p.add_argument("--reference_steps", type=int, default=None, help="the setting the others are compared with "
                   "(default: the largest of --steps)")  # fmt: skip
    p.add_argument("--num_samples", type=int, default=128, help="N pairs per setting (>= 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fid_extractor", default=None, help="evaluate.json extractor (default: seg_unet_encoder with "
                   "--seg_model_path, else the sanity-only random_resnet18_seed0)")  # fmt: skip
    p.add_argument("--fid_weights_path", default=None, help="weights of inception_v3 / radimagenet_resnet50")
    p.add_argument("--seg_model_path", default=None, help="seg_model.pt: seg_unet_encoder and pair consistency")
    st.add_launcher_option(p)
    args = p.parse_args(argv)
    try:
        args.steps = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    except ValueError:
        p.error(f"--steps {args.steps!r}: give comma-separated integers")
    if len(args.steps) < 2 or args.steps[0] < 1:
        p.error(f"--steps {args.steps}: give two or more step counts >= 1")
    args.reference_steps = args.steps[-1] if args.reference_steps is None else args.reference_steps
    if args.reference_steps not in args.steps:
        p.error(f"--reference_steps {args.reference_steps} is not one of --steps {args.steps}")
    if args.num_samples < 2:
        p.error("--num_samples must be >= 2 (FID needs two images at least)")
    st.check_runner_options(p, args, RUNNER_IDS)
    return args


def _kid(entry: dict) -> tuple[float, float] | None:
    return (entry["kid_mean"], entry["kid_std"]) if "kid_mean" in entry else None


def sweep_rows(metrics: dict[int, dict], seconds: dict[int, float], reference_steps: int) -> list[dict]:
    """One row per step count plus the real-half control row, from each evaluation's ``metrics.json``.

    Args:
        metrics: DDIM steps → that setting's ``metrics.json`` content (``scripts.evaluation.report``).
        seconds: DDIM steps → the sampling stage's wall time (s).
        reference_steps: the setting every other is compared with (a key of ``metrics``).

    Returns:
        Rows with the :data:`COLUMNS` keys; ``kid`` and ``kid_subset`` are ``(mean, std)`` tuples; ``equal`` is
        ``"yes"`` / ``"no"`` (``|ΔKID| <=`` the real-half control's KID std) or ``"reference"``.

    Raises:
        ValueError: the evaluations do not share the real set and extractor (not comparable), or lack KID.
    """
    first = metrics[reference_steps]

    def reference(m: dict) -> tuple:
        return m["sets"]["real"], m["extractor"]

    def control_of(m: dict) -> tuple:
        c = m["distances"]["controls"]["real_half_a_vs_real_half_b"]
        return c.get("fid"), c.get("kid_mean"), c.get("kid_std")

    def same(a, b) -> bool:  # the real-only control, recomputed by each evaluation: equal up to float rounding
        return all(x == y or None not in (x, y) and math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b, strict=True))

    for s, m in metrics.items():
        if reference(m) != reference(first) or not same(control_of(m), control_of(first)):
            raise ValueError(f"evaluation of {s} steps used another real set or extractor: not comparable")
        if "kid_mean" not in m["distances"]["generated_vs_real"]:
            raise ValueError(f"evaluation of {s} steps has no KID (too few images?): the sweep needs it")
    control = first["distances"]["controls"]["real_half_a_vs_real_half_b"]
    spread = control["kid_std"]
    ref_kid = first["distances"]["generated_vs_real"]["kid_mean"]
    rows = []
    for s in sorted(metrics):
        m = metrics[s]
        d, ms, n = m["distances"], m["mask_statistics"], m["headline"]["n_generated"]
        delta = abs(d["generated_vs_real"]["kid_mean"] - ref_kid)
        pair = m["pair_consistency"]
        rows.append({
            "key": f"steps_{s}", "steps": s, "n": n, "kid": _kid(d["generated_vs_real"]),
            "fid": d["generated_vs_real"].get("fid"),
            "kid_subset": _kid(d["controls"].get("generated_subset_vs_real_half_a", {})),
            "pair_dice": "skipped" if pair.get("status") == "skipped" else pair.get("dice_mean"),
            **{f"w_{k}": ms.get(k, {}).get("wasserstein") for k in ("area_px", "components")},
            "mask_dice": m["diversity"]["generated"]["mask_dice"].get("mean"),
            "s_per_pair": seconds[s] / n, "delta_kid": delta,
            "equal": "reference" if s == reference_steps else ("yes" if delta <= spread else "no"),
        })  # fmt: skip
    label = f"control: real half A vs half B ({first['distances']['half_split']})"
    rows.append({"key": "real_half_a_vs_real_half_b", "steps": label, "n": f"{control['n_a']} vs {control['n_b']}",
                 "kid": _kid(control), "fid": control.get("fid")})  # fmt: skip
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of :func:`sweep_rows` rows over :data:`COLUMNS`."""
    lines = ["| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(format_cell(r.get(k)) for _, k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_sweep(rows: Sequence[dict], path: Path, title: str) -> str:
    """KID (mean ± std) and pair consistency against DDIM steps, with the real-half control band; PNG at ``path``.

    Raises:
        ImportError: matplotlib is missing (``pip install -r requirements.txt``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    steps = [r for r in rows if isinstance(r["steps"], int)]
    control = next(r for r in rows if r["key"] == "real_half_a_vs_real_half_b")
    x = [r["steps"] for r in steps]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax.errorbar(x, [r["kid"][0] for r in steps], yerr=[r["kid"][1] for r in steps], marker="o", capsize=3,
                label="generated vs real")  # fmt: skip
    c_mean, c_std = control["kid"]
    ax.axhspan(c_mean - c_std, c_mean + c_std, color="0.85", label="real half A vs B (± std)")
    ax.axhline(c_mean, color="0.5", lw=1)
    ax.set(xscale="log", xlabel="DDIM steps", ylabel="KID", title="KID ↓")
    ax.legend(fontsize=8)
    dice = [(r["steps"], r["pair_dice"]) for r in steps if isinstance(r["pair_dice"], float)]
    if dice:
        bx.plot([d[0] for d in dice], [d[1] for d in dice], marker="o")
    bx.set(xscale="log", xlabel="DDIM steps", ylabel="Dice", title="pair consistency ↑")
    for axis in (ax, bx):  # the step counts as the only ticks (log-scale minor labels would overlap them)
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.set_xticks(x, [str(v) for v in x])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return str(path)


def _run_all(args: argparse.Namespace, work: Path) -> dict:
    overlay = [args.overlay] if args.overlay else []
    meta = meta_file("inference")
    common = {**args.overrides, "dataset_dir": st.absolute(args.dataset_dir), "cache_dir": st.absolute(args.cache_dir),
              "seed": args.seed, "ckpt_dir": st.absolute(args.ckpt_dir)}  # fmt: skip
    files = {name: config_files(name, overlay) for name in ("inference", "evaluate")}
    stages, metrics = {}, {}

    def stage(name, workflow, cfg, ov):
        stages[name] = st.run_stage(name, work / name, work / "logs" / f"{name.replace('/', '_')}.log", workflow, meta,
                                 files[cfg], ov, launcher=args.launcher)  # fmt: skip

    for s in args.steps:
        stage(f"samples/steps_{s}", "inference", "inference",
              {**common, "output_dir": str(work / "samples" / f"steps_{s}"), "num_samples": args.num_samples,
               "num_inference_steps": s})  # fmt: skip
    for s in args.steps:
        ov = {**common, **args.eval_overrides, "generated_dir": str(work / "samples" / f"steps_{s}"),
              "eval_dir": str(work / "eval" / f"steps_{s}"), "fid_extractor": args.fid_extractor,
              "fid_weights_path": st.absolute(args.fid_weights_path),
              "seg_model_path": st.absolute(args.seg_model_path)}  # fmt: skip
        stage(f"eval/steps_{s}", "evaluating", "evaluate", ov)
        metrics[s] = json.loads((work / "eval" / f"steps_{s}" / "metrics.json").read_text(encoding="utf-8"))
    return {"stages": stages, "metrics": metrics, "config_files": files, "common_overlay": common}


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    """Run (or resume) every stage; write the table, CSV, config record and PNG; return the written paths."""
    start = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    (work := Path(args.work_dir).resolve()).mkdir(parents=True, exist_ok=True)
    run = _run_all(args, work)
    seconds = {s: run["stages"][f"samples/steps_{s}"]["seconds"] for s in args.steps}
    rows = sweep_rows(run["metrics"], seconds, args.reference_steps)
    first = run["metrics"][args.reference_steps]
    md_path, csv_path, cfg_path, png_path = st.free_names(work, ("table.md", "table.csv", "config.json",
                                                                 "steps_kid.png"))  # fmt: skip
    ckpt = Path(args.ckpt_dir)
    config = {
        "command": shlex.join([sys.executable, "-m", "scripts.experiments.steps_sweep", *argv]), "cwd": os.getcwd(),
        "work_dir": str(work), "arguments": vars(args), "config_files": run["config_files"],
        "common_overlay": run["common_overlay"], "extractor": first["extractor"], "real_set": first["sets"]["real"],
        "checkpoints_sha256": {f: file_sha256(str(ckpt / f)) for f in ("guider.pt", "generator.pt")},
        "stages": {k: {"seconds": v["seconds"], "finished": v["finished"], "command": v.get("command")}
                   for k, v in run["stages"].items()},
        "versions": environment(), "seconds_this_invocation": round(time.monotonic() - start, 1), "rows": rows,
    }  # fmt: skip
    st.write_json(cfg_path, config)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        keys = [k for _, k in COLUMNS if k not in ("kid", "kid_subset")]
        w.writerow(["key", *keys, "kid_mean", "kid_std", "kid_subset_mean", "kid_subset_std"])
        for r in rows:
            w.writerow([r["key"], *("" if r.get(k) is None else r[k] for k in keys),
                        *(r.get("kid") or ("", "")), *(r.get("kid_subset") or ("", ""))])  # fmt: skip
    ex, real = first["extractor"], first["sets"]["real"]
    title = (f"PIG, N = {args.num_samples} per setting, extractor {ex['name']}, real: {real['n']} "
             f"'{real['split']}' slices")  # fmt: skip
    plot_sweep(rows, png_path, title)
    text = [
        "# DDIM steps against quality (one trained PIG, same seed and N for every setting)", "",
        f"Feature extractor `{ex['name']}` (weights SHA-256 `{ex['weights_sha256']}`, {ex['input_size_px']} px input)"
        + (" — **random weights: a pipeline check only, not a quality measure**." if ex["sanity_only"] else "."),
        f"Real reference: {real['n']} slices of the '{real['split']}' split ({real['patients']} patients). "
        f"Generated: N = {args.num_samples} pairs per setting, seed {args.seed}, checkpoints `{args.ckpt_dir}`.", "",
        format_table(rows),
        f"Equal to the reference ({args.reference_steps} steps): the absolute KID(S) − KID(ref) within the real-half "
        "control's "
        "KID standard deviation (over KID subsets), the resolution of KID at this N. 'KID, N-matched': the generated "
        "pairs subsampled to the size of real half B, against real half A — compare with the control row. "
        "s / pair: the sampling stage's wall time (process start-up and writing included) over N.", "",
        f"**Small-sample bias.** {SMALL_SAMPLE_NOTE}", "",
        f"Full record (command, settings, versions, checkpoint SHA-256, stage seconds): `{cfg_path.name}`; "
        f"plot: `{png_path.name}`.", "",
    ]  # fmt: skip
    tmp = md_path.with_name(md_path.name + ".tmp")
    tmp.write_text("\n".join(text), encoding="utf-8")
    os.replace(tmp, md_path)
    logger.info("table written to %s\n%s", md_path, format_table(rows))
    return {"table_md": str(md_path), "table_csv": str(csv_path), "config": str(cfg_path), "png": str(png_path)}


if __name__ == "__main__":
    main()
