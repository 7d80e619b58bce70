#!/usr/bin/env bash
# PIG performance check on one GPU, at the paper's scale (512 x 512, the paper U-Net of diffusion.json, 256 DDIM
# steps): scripts.perf.benchmark with float32 (the baseline), bfloat16, channels-last, inference_mode and, last,
# torch.compile; a short training burst of both stages (guider and generator through MONAI's SupervisedTrainer,
# samples/s); peak memory and growth with batch / size / steps. Sized for about 6 minutes on one NVIDIA H200; each
# phase has its own time limit, so a slow phase costs its own figures only.
#
# Usage (from anywhere):
#   bash bundle/scripts/perf/gpu_check.sh [--out DIR] [--tiny] [--duke DIR] [--fetch-wheels] [--help]
#   On your own GPU machine (the bundle's requirements and a CUDA torch installed):
#     bash bundle/scripts/perf/gpu_check.sh --out DIR --duke /path/to/duke_dbt_slices
#     --out DIR       results folder (default: $OUT when set, else bundle/runs/perf/gpu_check)
#     --tiny          dry run on the CPU in seconds (smoke U-Net, 16 px, 2 steps, 1 repeat); also GPU_CHECK_TINY=1
#     --duke DIR      the Duke slices for the 256-px PIG run (default <repo>/.gpudata/duke_dbt_slices, then
#                     ../shared/data/duke_dbt_slices); without them that phase is skipped
#     --fetch-wheels  download the wheels the GPU machine lacks into <repo>/.whl (run on a machine with pip access)
#   PYTHON=...        the interpreter (default python3)
#
# Results (6 files in one folder; a lent machine's $OUT hands back at most 8):
#   summary.md    every figure as a Markdown table, per phase, with achieved TFLOP/s against the FLOP floor
#   results.json  every phase's benchmark JSON (each figure with device, dtype, size, batch, steps, versions)
#   growth.png    time against batch, image size and steps
#   log.txt       the phases' output
#   duke_256_summary.md, duke_256_metrics.json   PIG trained at 256 px on the Duke slices, sampled and evaluated
#
# FLOP floor: one forward pass of the paper U-Net at 512 px costs 124 GFLOP (multiply-adds counted as 2), so
# achieved TFLOP/s = 124e9 x network evaluations per second (sampling: 2 per step and pair; training: forward +
# backward ~ 3 forwards, the generator's iteration + 1 for the frozen guider). Ceilings measured on an H200 of this
# workplace: dense bf16 matrix products about 790 TFLOP/s; float32 (TF32 convolutions by PyTorch's default) less.
#
# Packages. The GPU machine's own python3 (3.12, torch 2.11 with CUDA) has numpy, scipy, scikit-image, pandas,
# pillow, tensorboard, einops, tqdm, matplotlib and psutil, but not MONAI, pytorch-ignite or nibabel (imported by
# `import scripts`; itk, pydicom, highdicom, slicerio are optional for the benchmark). Nothing can be downloaded
# there, so fetch the wheels first, on a machine with pip access, into the repository's ignored .whl/ folder:
#   echo /.whl/ >> .git/info/exclude
#   for spec in monai==1.6.1 pytorch-ignite==0.5.5 nibabel==5.4.2; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$spec"
#   done
# (`--fetch-wheels` runs exactly this.) Carry `.whl` with the run (device tool: carry [".whl"]); this script installs
# them with `pip install --no-index --no-deps --target /tmp/site .whl/*.whl` when `import monai` fails.
#
# A lent-machine call, from the repository root:  bash bundle/scripts/perf/gpu_check.sh   (timeout_s 480)
set -euo pipefail

BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPO="$(dirname "$BUNDLE")"
PY="${PYTHON:-python3}"
TINY="${GPU_CHECK_TINY:-0}"
DEST="${OUT:-$BUNDLE/runs/perf/gpu_check}"
FETCH=0
DUKE=""
WHEELS=("monai==1.6.1" "pytorch-ignite==0.5.5" "nibabel==5.4.2")

while [ $# -gt 0 ]; do
    case "$1" in
        --out) DEST="$2"; shift 2 ;;
        --tiny) TINY=1; shift ;;
        --fetch-wheels) FETCH=1; shift ;;
        --duke) DUKE="$2"; shift 2 ;;
        -h|--help) sed -n '2,40p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

fetch_wheels() {
    cd "$REPO"
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
    for spec in "${WHEELS[@]}"; do
        "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$spec"
    done
    ls -l .whl
}

ensure_packages() {
    if ! "$PY" -c "import monai, ignite, nibabel" 2>/dev/null; then
        if compgen -G "$REPO/.whl/*.whl" >/dev/null; then
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
                "$REPO"/.whl/*.whl
            export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
        else
            echo "gpu_check.sh: MONAI / pytorch-ignite / nibabel missing and no wheels in $REPO/.whl;" \
                "run 'bash bundle/scripts/perf/gpu_check.sh --fetch-wheels' where pip works, then carry .whl" >&2
            exit 2
        fi
    fi
    "$PY" -c "import torch, monai, ignite; print(f'python3 torch {torch.__version__} (CUDA {torch.version.cuda}, ' \
f'available {torch.cuda.is_available()}), MONAI {monai.__version__}, ignite {ignite.__version__}')"
}

# phase NAME LIMIT_S ARGS...: one benchmark process with its own time limit; a failure is logged, not fatal
phase() {
    local name="$1" limit="$2"
    shift 2
    echo "=== phase $name (limit ${limit} s): python -m scripts.perf.benchmark $*" | tee -a "$WORK/log.txt"
    local start=$SECONDS rc=0
    (cd "$BUNDLE" && timeout "$limit" "$PY" -m scripts.perf.benchmark "$@" --out "$WORK/$name") \
        >>"$WORK/log.txt" 2>&1 || rc=$?
    echo "=== phase $name: exit $rc after $((SECONDS - start)) s" | tee -a "$WORK/log.txt"
}

# ---------------------------------------------------------------------------------------------------------------
# PIG at 256 px on the Duke slices: one training (both stages, demo U-Net, slice mode, thousands of iterations per
# network, bf16), a segmenter on the same slices (the in-domain extractor and pair consistency), 64 pairs sampled and
# evaluated against the same real training set. Data: --duke DIR, else <repo>/.gpudata/duke_dbt_slices (copy
# ../shared/data/duke_dbt_slices there and carry .gpudata: ../shared does not travel). Preparing the 58 JPEGs takes
# minutes on one core: prepare them beforehand with the same ids (--cache_dir <repo>/.gpudata/duke_cache, see
# DUKE_PREP below) and carry that too; the phase copies it. --tiny without --duke runs the same steps on the
# embedded phantom at toy sizes (the CI test).
DUKE_PREP=(--crop_mode slice --min_patch_size 16 --patches_per_lesion 4)
duke_256_training() {
    local duke="$DUKE" d="$WORK/duke_256"
    [ -n "$duke" ] || [ "$TINY" = 1 ] || [ ! -d "$REPO/.gpudata/duke_dbt_slices" ] || duke="$REPO/.gpudata/duke_dbt_slices"
    if [ "$TINY" != 1 ] && [ -z "$duke" ]; then
        echo "=== phase duke_256: skipped, no Duke slices (--duke DIR or <repo>/.gpudata/duke_dbt_slices)" \
            | tee -a "$WORK/log.txt"
        return 0
    fi
    local size=256 epochs=30 length=100 seg_epochs=60 n=64 steps=50 amp=True limit=150
    if [ "$TINY" = 1 ]; then size=32 epochs=1 length=2 seg_epochs=1 n=4 steps=2 amp=False limit=120; fi
    mkdir -p "$d"
    [ -d "$REPO/.gpudata/duke_cache" ] && [ -n "$duke" ] && cp -r "$REPO/.gpudata/duke_cache" "$d/cache"
    local meta=(--meta_file configs/metadata.json --logging_file configs/logging.conf)
    local ov=(--cache_dir "$d/cache" --image_size "$size" "${DUKE_PREP[@]}")
    local seg_ov=() extractor=(--fid_extractor seg_unet_encoder --seg_model_path "$d/seg/seg_model.pt")
    if [ -n "$duke" ]; then ov+=(--dataset_dir "$duke"); else ov+=(--phantom_cases 6); seg_ov+=(--num_folds 3); fi
    # the dry run skips the segmenter (one process less in CI) and evaluates with the seeded random extractor
    [ "$TINY" = 1 ] && [ -z "$duke" ] && extractor=(--fid_extractor random_resnet18_seed0)
    local pig="['configs/data.json','configs/diffusion.json','configs/train.json','configs/demo.json']"
    local start=$SECONDS rc=0
    echo "=== phase duke_256 (limit ${limit} s of training): PIG ${size} px on ${duke:-the phantom}," \
        "${epochs} x ${length} iterations per network" | tee -a "$WORK/log.txt"
    (
        cd "$BUNDLE"
        t0=$SECONDS
        timeout "$limit" "$PY" -m monai.bundle run training "${meta[@]}" --config_file "$pig" "${ov[@]}" \
            --ckpt_dir "$d/pig" --max_epochs "$epochs" --epoch_length "$length" --amp "$amp" \
            --amp_dtype bfloat16 --preview_samples 0 || exit 11
        echo "duke_256 pig_training_s $((SECONDS - t0))"
        t0=$SECONDS
        [ "${extractor[1]}" = random_resnet18_seed0 ] || timeout 90 "$PY" -m monai.bundle run training \
            --meta_file configs/seg_metadata.json \
            --logging_file configs/logging.conf \
            --config_file "['configs/data.json','configs/seg.json','configs/seg_train.json']" "${ov[@]}" \
            --ckpt_dir "$d/seg" --max_epochs "$seg_epochs" --num_workers 0 "${seg_ov[@]}" || exit 12
        echo "duke_256 seg_training_s $((SECONDS - t0))"
        t0=$SECONDS
        timeout 90 "$PY" -m monai.bundle run inference "${meta[@]}" \
            --config_file "['configs/data.json','configs/diffusion.json','configs/inference.json','configs/demo.json']" \
            --image_size "$size" --ckpt_dir "$d/pig" --output_dir "$d/pairs" --num_samples "$n" \
            --num_inference_steps "$steps" --amp "$amp" --amp_dtype bfloat16 || exit 13
        echo "duke_256 sampling_s $((SECONDS - t0))"
        timeout 90 "$PY" -m monai.bundle run evaluating "${meta[@]}" \
            --config_file "['configs/data.json','configs/diffusion.json','configs/evaluate.json','configs/demo.json']" \
            "${ov[@]}" --generated_dir "$d/pairs" --eval_dir "$d/eval" "${extractor[@]}" --kid_subset_size 20 \
            || exit 14
    ) >>"$WORK/log.txt" 2>&1 || rc=$?
    echo "=== phase duke_256: exit $rc after $((SECONDS - start)) s" | tee -a "$WORK/log.txt"
    if [ -f "$d/eval/summary.md" ]; then
        cp "$d/eval/summary.md" "$WORK/duke_256_summary.md"
        cp "$d/eval/metrics.json" "$WORK/duke_256_metrics.json"
    fi
    rm -rf "$d/cache"
}

summarize() {
    "$PY" - "$WORK" "$DEST" <<'PYEOF'
import json, shutil, sys
from pathlib import Path

work, dest = Path(sys.argv[1]), Path(sys.argv[2])
FLOP = 124e9  # one paper U-Net forward at 512 px
docs = {p.parent.name: json.loads(p.read_text()) for p in sorted(work.glob("*/benchmark.json"))}
lines = ["# PIG GPU check", ""]
for name, doc in docs.items():
    m = doc["meta"]
    lines += [f"## {name}", "", f"{m['device']}; torch {m['torch']}, MONAI {m['monai']}; {m['preset']} U-Net, "
              f"{m['image_size']} px, batch {m['batch']}, {m['steps']} steps, median of {m['repeats']} after "
              f"{m['warmup']} warm-up; `{m['command']}`", "",
              "| figure | value | unit | target | dtype | size | batch | steps | TFLOP/s (124 GFLOP floor) |",
              "|---|---|---|---|---|---|---|---|---|"]
    base = {f["name"]: f for f in doc["figures"]}
    per_pair = base.get("PIG paired sampling per pair")
    for f in doc["figures"]:
        tflops = ""
        if f["image_size"] == 512 and m["preset"] == "paper":
            if f["unit"] == "TFLOP/s":
                tflops = f"{f['value']:.1f}"
            elif f["name"] == "PIG paired sampling per pair" or (f["name"].startswith("sampling: ") and per_pair):
                t_pair = f["value"] if f["unit"] == "s/pair" else per_pair["value"] * f["value"]
                tflops = f"{FLOP * 2 * f['steps'] / t_pair / 1e12:.1f}"
        steps = "" if f["steps"] is None else f["steps"]
        lines.append(f"| {f['section']}: {f['name']} | {f['value']:.4g} | {f['unit']} | {f.get('target', '')} | "
                     f"{f['dtype']} | {f['image_size']} | {f['batch']} | {steps} | {tflops} |")
    lines.append("")
if not docs:
    lines.append("No phase wrote results; see log.txt.")
dest.mkdir(parents=True, exist_ok=True)
extras = [e for e in ("duke_256_summary.md", "duke_256_metrics.json") if (work / e).is_file()]
for extra in extras:
    shutil.copy(work / extra, dest / extra)
if extras:
    lines += ["## duke_256", "", f"PIG at 256 px on the Duke slices: {', '.join(extras)} (timings in log.txt).", ""]
(dest / "summary.md").write_text("\n".join(lines) + "\n")
(dest / "results.json").write_text(json.dumps(docs, indent=1))
for png in sorted(work.glob("*/growth.png"))[:1]:
    shutil.copy(png, dest / "growth.png")
shutil.copy(work / "log.txt", dest / "log.txt")
print("\n".join(lines))
print(f"written: {dest}/summary.md, results.json, log.txt" + (", growth.png" if (dest / "growth.png").exists() else ""))
PYEOF
}

main() {
    if [ "$FETCH" = 1 ]; then
        fetch_wheels
        return
    fi
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/pig_gpu_check.XXXXXX")"
    : >"$WORK/log.txt"
    ensure_packages >"$WORK/env.txt" 2>&1 || { cat "$WORK/env.txt" >&2; exit 2; }  # not in a pipe: it exports
    tee -a "$WORK/log.txt" <"$WORK/env.txt"
    if [ "$TINY" = 1 ]; then
        # dry run: every phase and the summary, on the CPU at toy sizes (the CI test runs this)
        local common=(--preset smoke --device cpu --image-size 16 --batch 2 --steps 2 --repeats 1 --warmup 1
            --train-iters 1 --tag dry-run)
        # (the benchmark's own test covers every section; this checks the script's phase runner and summary)
        phase core 120 "${common[@]}" --sections sampling
        echo "=== phase memory_growth, compile: skipped in the dry run (the benchmark's test covers memory)" \
            | tee -a "$WORK/log.txt"
    else
        local common=(--preset paper --device cuda --repeats 2 --warmup 1 --tag "gpu_check")
        # fp32 baseline, bf16, channels-last, inference_mode; the training burst: 10 iterations per stage and run
        phase core 190 "${common[@]}" --train-iters 10 --sections sampling,overhead,training,options \
            --options inference_mode,amp,channels_last,loader
        phase memory_growth 75 "${common[@]}" --train-iters 2 --sections memory,growth --probe-steps 4 \
            --probes sample_fp32,sample_bf16,train_guider,train_generator \
            --growth-sizes 64,128,256,512 --growth-batches 1,2,4,8,16 --growth-steps 4,16,64
        # last: compilation may take minutes; its own limit keeps the earlier results
        phase compile 105 "${common[@]}" --train-iters 10 --sections options --options compile --compile
    fi
    duke_256_training
    summarize
    rm -rf "$WORK"
}

main
