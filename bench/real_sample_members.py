"""Evidence on real images: members trained for the same CPU minutes each on the real sample's labelled images, then
test-time averaged and blended with the pipeline's own scripts, scored on the validation split beside predicting
the training mean.

    python bench/real_sample_members.py --root /tmp/real_members              # 6 minutes of training per member
    python bench/real_sample_members.py --root /tmp/real_members --minutes 2 --members try_p4m_gcnn72

Needs the real sample (../shared/real_sample, or $GALAXY_REAL_SAMPLE); its images are linked into ROOT/data/raw,
never copied. Steps 1 and 2 make the IDs and labels (351 labelled images: the first 316 train, the last 35
validate). Per member: a one-chunk run measures its training speed (images/s, from the training log), then a fresh
run trains as many chunks as fit --minutes at that speed; step 6 averages --num-transforms of the member's test-time
transforms. The 2014 member trains with --init standard, the option the README gives for short runs. Printed: each
member's validation RMSE and the three blends' (uniform, one weight per model, one per model per column), the fitted
ones both fitted on the 35 images they are scored on (as blend_predictions.py does) and cross-fitted (each fifth of
the images scored with weights fitted on the other four fifths), and the actual training time of each member.
"""
import argparse
import re
import subprocess
import sys
import time

import numpy as np

import common
import blend_predictions
import load_data
from galaxyzoo import checkpoints
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import submission

BEST = "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense"
MEMBERS = (BEST, "try_p4m_gcnn72", "try_resnet18_scratch")
MEMBER_OPTIONS = {BEST: ["--init", "standard", "--chunk-size", "304"]}  # 304: 19 minibatches of 16 of the 316 images
FOLDS = 5


def link_real_sample(root, sample):
    """ROOT/data/raw as the Kaggle layout, from links to the real sample's labelled training and test images."""
    raw = root / "data" / "raw"
    labels = sample / common.REAL_SAMPLE_LABELS
    for subset, source in (("train", "images_train_rev1"), ("test", "images_test_rev1")):
        folder = raw / paths.RAW_IMAGE_FOLDERS[subset]
        folder.mkdir(parents=True, exist_ok=True)
        for image in sorted((sample / source).glob("*.jpg")):
            if not (folder / image.name).exists():
                (folder / image.name).symlink_to(image)
    if not (raw / paths.SOLUTIONS_CSV).exists():
        (raw / paths.SOLUTIONS_CSV).symlink_to(labels)


def script(name, *args):
    """Run a project script as a user would; its output is shown, and returned."""
    command = [sys.executable, str(common.PROJECT_DIR / f"{name}.py"), *map(str, args)]
    print("$", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, cwd=common.PROJECT_DIR, capture_output=True, text=True)
    sys.stdout.write(result.stdout[-3000:])
    if result.returncode != 0:
        sys.exit(f"{name}.py failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def train_for(member, root, minutes):
    """Train member from scratch for about `minutes` of training; returns (chunks, images per chunk, seconds)."""
    options = ["--root", root, "--fresh", *MEMBER_OPTIONS.get(member, [])]
    log = script(member, *options, "--num-chunks", 1, "--validate-every", 1)
    speed = float(re.findall(r"chunk 1/1 .* ([0-9.]+) img/s", log)[-1])
    chunk_images = checkpoints.load_checkpoint(checkpoints.checkpoint_path(member))["config"]["CHUNK_SIZE"]
    chunks = max(1, int(minutes * 60 * speed / chunk_images))
    print(f"{member}: {speed:.1f} images/s in its first chunk of {chunk_images}: {chunks} chunks in {minutes:g} min",
          flush=True)
    script(member, *options, "--num-chunks", chunks, "--validate-every", max(1, chunks // 4))
    seconds = checkpoints.load_checkpoint(checkpoints.checkpoint_path(member))["train_seconds"]
    return chunks, chunk_images, seconds


def cross_fitted(stack, labels, per_column):
    """Each fold's rows blended with weights fitted on the other folds' rows."""
    blended = np.empty_like(labels)
    for fold in np.array_split(np.arange(len(labels)), FOLDS):
        rest = np.setdiff1d(np.arange(len(labels)), fold)
        weights = blend_predictions.fit_weights(stack[:, rest], labels[rest], per_column)
        blended[fold] = blend_predictions.blend(stack[:, fold], weights)
    return blended


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the project root to build and train in")
    parser.add_argument("--minutes", type=float, default=6.0, help="training minutes per member (default 6)")
    parser.add_argument("--num-transforms", type=int, default=6, help="test-time transforms per image (default 6)")
    parser.add_argument("--members", default=",".join(MEMBERS), help="comma-separated try_*.py names")
    args = parser.parse_args(argv)
    sample = common.real_sample_or_exit()
    members = [name.strip().removesuffix(".py") for name in args.members.split(",") if name.strip()]
    root = common.Path(args.root).resolve()
    link_real_sample(root, sample)
    paths.set_root(root)
    script("create_train_ids", "--root", root)
    script("create_solutions_train", "--root", root)

    trained = {}
    for member in members:
        started = time.time()
        trained[member] = train_for(member, root, args.minutes)
        script("predict_augmented_npy", member, "--root", root, "--num-transforms", args.num_transforms)
        print(f"{member}: {time.time() - started:.0f} s with calibration and predictions", flush=True)
    if len(members) > 1:
        script("blend_predictions", "--root", root, "--models", ",".join(members))

    split = load_data.labelled_split()
    labels = split.valid_labels.astype(np.float64)
    mean = submission.rmse(np.broadcast_to(split.train_labels.mean(axis=0), labels.shape), labels)
    stack = np.stack([records.load_gz(paths.augmented_predictions_path(member, "valid")) for member in members])
    rows = [(member, submission.rmse(predictions, labels), trained[member])
            for member, predictions in zip(members, stack)]
    if len(members) > 1:
        rows.append(("uniform blend", submission.rmse(stack.mean(axis=0), labels), None))
        for name, per_column in (("one weight per model", False), ("one weight per model per column", True)):
            in_sample = blend_predictions.blend(stack, blend_predictions.fit_weights(stack, labels, per_column))
            rows.append((f"{name}, fitted on these images", submission.rmse(in_sample, labels), None))
            rows.append((f"{name}, cross-fitted ({FOLDS} folds)",
                         submission.rmse(cross_fitted(stack, labels, per_column), labels), None))
    print(f"\n{len(split.train_ids)} training and {len(labels)} validation images; predicting the training mean: "
          f"validation RMSE {mean:.4f} (0.9 of it: {0.9 * mean:.4f})")
    print("| | validation RMSE | / training mean | chunks x images | training time |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, rmse, run in rows:
        detail = f"{run[0]} x {run[1]} | {run[2] / 60:.1f} min" if run else " | "
        print(f"| {name} | {rmse:.4f} | {rmse / mean:.3f} | {detail} |")


if __name__ == "__main__":
    main()
