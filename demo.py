"""The whole pipeline on a synthetic dataset, every step in README order, with short schedules.

    python demo.py                    # everything under demo_run/ (the default root of the demo)
    python demo.py --root /tmp/gz     # elsewhere
    python demo.py --root ensemble_run --models A,B,C    # train and blend several try_*.py models
    python demo.py --root mixed_run --models try_resnet50_fastai,try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense

Each step is the same script a user runs by hand on the real data. Two things differ from the recipe: the
schedule is shortened, and the models start from the standard initialisation (--init standard) instead of the
original's, which keeps the network at the training mean far longer than this demo trains (doc/method.md,
"Initialisation and short runs"); the newer members (backbones.py) keep their own start. Members that fine-tune a
pretrained backbone need --weights (hub or a file); members whose minibatch does not divide a chunk train with
minibatches of 16 (DEMO_BATCH_SIZE); every member's stages are scaled to --num-chunks in all. Running it again
reuses the dataset and the source-extraction files and resumes training where it stopped.
"""
import argparse
import atexit
import os
import string
import subprocess
import sys
import time
from pathlib import Path

import torch

import blend_predictions
from galaxyzoo import checkpoints
import convert_npy_to_csv
import make_report
import score_predictions
from galaxyzoo import recipe
from galaxyzoo import source_params
from galaxyzoo import paths

HERE = Path(__file__).resolve().parent
MODEL = "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense"
DEMO_BATCH_SIZE = 16


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(HERE / "demo_run"), help="where the demo writes everything")
    parser.add_argument("--num-train", type=int, default=2700, help="synthetic training images")
    parser.add_argument("--num-test", type=int, default=300, help="synthetic test images")
    parser.add_argument("--num-chunks", type=int, default=12, help="training chunks (the recipe has 2500)")
    parser.add_argument("--chunk-size", type=int, default=992,
                        help="images per chunk, a multiple of the batch size: 62 minibatches of 16 (the recipe has 10000)")
    parser.add_argument("--validate-every", type=int, default=4, help="chunks between validations (recipe: 20)")
    parser.add_argument("--num-transforms", type=int, default=6,
                        help="test-time transforms per image (the recipe has 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset (each model trains "
                        "with its own recipe's SEED, so repeated-run members stay different)")
    parser.add_argument("--init", choices=("standard", "original"), default="standard",
                        help="initialisation of the trained models (train.py --init). The demo's default, standard, "
                        "leaves the training mean within the demo's few thousand images; with the recipe's original "
                        "one the network is still at the mean when the demo ends (doc/method.md)")
    parser.add_argument("--weights", default=None,
                        help="pretrained backbone weights for the members that fine-tune one (train.py --weights): hub "
                        "(download) or a file; those members refuse random weights")
    parser.add_argument("--models", default=MODEL,
                        help="comma-separated try_*.py models to train, average and blend (default: the best model)")
    args = parser.parse_args()
    args.models = [name.strip().removesuffix(".py") for name in args.models.split(",") if name.strip()]
    missing = [name for name in args.models if not (HERE / f"{name}.py").is_file()]
    if missing or not args.models:
        parser.error(f"no such model script: {', '.join(f'{name}.py' for name in missing) or '(none given)'}")
    fine_tuned = [name for name in args.models if Network(name).pretrained]
    if fine_tuned and args.weights is None:
        parser.error(f"{', '.join(fine_tuned)} fine-tune{'s' if len(fine_tuned) == 1 else ''} pretrained weights: pass "
                     "--weights hub or --weights PATH (or train try_resnet18_scratch, which starts from random "
                     "weights)")
    return args


def uses_source_extraction(model):
    """Whether the try_*.py model's recipe reads the source-extraction parameters (step 3)."""
    namespace = vars(checkpoints.import_try_script(model))
    return recipe.TryFile.from_namespace(namespace).recipe.PREPROCESSING is not None  # a default when not declared


class Network:
    """What the demo needs to know of a try_*.py model's network: pretrained (it fine-tunes pretrained backbone
    weights), backbone (it is built on backbones.py, whose networks keep their own initialisation) and its recipe's
    minibatch size."""

    def __init__(self, model):
        module = checkpoints.import_try_script(model)
        with torch.device("meta"):
            network = module.build_model()
        self.pretrained = getattr(network, "pretrained", False)
        self.backbone = hasattr(network, "pretrained")
        self.batch_size = recipe.TryFile.from_namespace(vars(module)).recipe.BATCH_SIZE


def training_options(model, args):
    """The options that fit train.py to the demo's short schedule for this model."""
    network = Network(model)
    options = ["--num-chunks", str(args.num_chunks), "--chunk-size", str(args.chunk_size),
               "--validate-every", str(args.validate_every)]
    if not network.backbone:
        options += ["--init", args.init]
    if network.pretrained:
        options += ["--weights", args.weights]
    if args.chunk_size % network.batch_size:
        options += ["--batch-size", str(DEMO_BATCH_SIZE)]
    return options


def run_step(number, title, writes, command, env):
    """Run one pipeline script as a user would; `writes`: the paths it writes, shown relative to the root."""
    print(f"\n=== Step {number}: {title}", flush=True)
    print(f"    writes: {', '.join(str(shown(path)) for path in writes)}", flush=True)
    print(f"    $ {' '.join(command)}", flush=True)
    start = time.time()
    result = subprocess.run([sys.executable, *command], cwd=HERE, env=env)
    if result.returncode != 0:
        sys.exit(f"demo: step {number} ({title}) failed with exit code {result.returncode}")
    print(f"    step {number} took {time.time() - start:.1f} s", flush=True)


def shown(path):
    """`path` relative to the project root when it lies under it."""
    path = Path(path)
    return path.relative_to(paths.root()) if path.is_relative_to(paths.root()) else path


def main():
    args = parse_args()
    root = Path(args.root).resolve()
    env = dict(os.environ, GALAXY_ROOT=str(root))
    paths.set_root(root)  # where this process looks for the files the steps write
    started = time.time()
    with_root = ["--root", str(root)]

    if paths.solutions_csv_path().exists():
        print(f"Reusing the synthetic dataset in {paths.raw_dir()}")
    else:
        run_step(0, "render the synthetic dataset",
                 [paths.raw_dir(), paths.solutions_csv_path(), paths.synthetic_test_solutions_path()],
                 ["make_synthetic_data.py", *with_root, "--num-train", str(args.num_train),
                  "--num-test", str(args.num_test), "--seed", str(args.seed)], env)

    run_step(1, "ID lists", [paths.ids_path(subset) for subset in paths.SUBSETS],
             ["create_train_ids.py", *with_root], env)
    run_step(2, "training labels", [paths.solutions_train_path()], ["create_solutions_train.py", *with_root], env)
    extraction_files = source_params.all_paths()
    if not any(uses_source_extraction(model) for model in args.models):
        print("\n=== Step 3 (optional) skipped: none of the models centres or rescales its input")
    elif all(path.exists() for path in extraction_files):
        print(f"\n=== Step 3 (optional): reusing {', '.join(path.name for path in extraction_files)}")
    else:
        run_step(3, "galaxy centre and size parameters (optional step)", extraction_files,
                 ["extract_pysex_params.py", *with_root], env)
    run_step(4, "copy the images to RAM and build the decoded cache", [paths.ram_dir()],
             ["copy_data_to_shm.py", *with_root, "--cache"], env)
    # However the demo ends from here on, its RAM copy (1.7 GB of /dev/shm) is given back.
    atexit.register(subprocess.run, [sys.executable, "copy_data_to_shm.py", *with_root, "--remove"], cwd=HERE, env=env)
    # Steps 5 and 6 once per model: 5a, 5b, ... when there are several.
    letters = string.ascii_lowercase if len(args.models) > 1 else [""]
    for letter, model in zip(letters, args.models):
        run_step(f"5{letter}", f"train {model} (short schedule)",
                 [checkpoints.checkpoint_path(model), checkpoints.submission_path(model)],
                 [f"{model}.py", *with_root, *training_options(model, args)],
                 env)
    for letter, model in zip(letters, args.models):
        run_step(f"6{letter}", f"test-time-averaged predictions of {model}",
                 [paths.augmented_predictions_path(model, split) for split in ("valid", "test")],
                 ["predict_augmented_npy.py", model, *with_root, "--num-transforms", str(args.num_transforms)], env)
    blends = [blend_predictions.blended_dir() / name for name in blend_predictions.BLEND_FILES.values()]
    run_step(7, "blend the models", blends, ["blend_predictions.py", *with_root, "--models", ",".join(args.models)],
             env)
    uniform_blend = blend_predictions.blended_dir() / blend_predictions.BLEND_FILES["uniform"]
    submission = convert_npy_to_csv.csv_path_for(uniform_blend)
    run_step(8, "convert to a Kaggle submission", [submission],
             ["convert_npy_to_csv.py", str(uniform_blend), *with_root], env)
    run_step(9, "score the submission against the synthetic test labels",
             [score_predictions.default_png_path(submission)], ["score_predictions.py", str(submission), *with_root], env)
    report = make_report.report_dir() / "index.html"
    run_step(10, "the run's report", [report], ["make_report.py", *with_root], env)

    for line in blend_predictions.member_warnings(args.models):
        print(f"{line} (the blend scored in step 9 includes it)")
    print(f"\nDemo finished in {(time.time() - started) / 60:.1f} min. Everything is under {root}.")
    print(f"The run's report: {report} (open it in a browser)")


if __name__ == "__main__":
    main()
