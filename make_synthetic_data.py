"""Render a synthetic Galaxy Zoo dataset in the Kaggle layout (the project's built-in demo and test data).

    python make_synthetic_data.py [--root ROOT] [--num-train 2700] [--num-test 300] [--seed 0] [--workers W]
    python make_synthetic_data.py --root ROOT --ids-from DIR      # the GalaxyIDs of DIR/{train,test}_ids.npy

Writes under the data root:
    data/raw/images_train_rev1/<GalaxyID>.jpg, data/raw/images_test_rev1/<GalaxyID>.jpg
    data/raw/training_solutions_rev1.csv      the training labels (header GalaxyID,Class1.1,...,Class11.6)
    data/raw/synthetic_test_solutions.csv     the test labels, same format (only the scoring step reads it)

GalaxyIDs are distinct 6-digit numbers drawn from the seed, or those of --ids-from; each image and its labels
depend only on (seed, GalaxyID), so the same seed gives the same bytes. The CSVs are written last: a run that stopped
early leaves no CSV. Refuses to write into image folders that already hold images, unless --overwrite.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from galaxyzoo import decision_tree
from galaxyzoo import parallel
from galaxyzoo import synthetic_galaxies
from galaxyzoo import paths
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors

FIRST_ID, LAST_ID = 100000, 999999  # 6-digit GalaxyIDs, like the real ones
DECIMALS = 6


def draw_galaxy_ids(seed, num_train, num_test):
    """Distinct 6-digit GalaxyIDs for both subsets, drawn from `seed`: (train int64 (N,), test int64 (M,)),
    each ascending, the two disjoint."""
    total = num_train + num_test
    if total > LAST_ID - FIRST_ID + 1:
        raise errors.DataError(f"cannot draw {total} distinct 6-digit GalaxyIDs")
    ids = FIRST_ID + np.random.default_rng([seed]).choice(LAST_ID - FIRST_ID + 1, total, replace=False)
    return np.sort(ids[:num_train]).astype(np.int64), np.sort(ids[num_train:]).astype(np.int64)


def render_to_file(task):
    """Render galaxy `galaxy_id` of dataset `seed` and write its JPEG to `path`.
    task = (seed, galaxy_id, path); returns its labels, float64 (37,)."""
    seed, galaxy_id, path = task
    image, labels, _ = synthetic_galaxies.make_example(seed, int(galaxy_id))
    with open(path, "wb") as f:
        f.write(synthetic_galaxies.encode_jpeg(image))
    return labels


def render_all(tasks, workers):
    """Run render_to_file over `tasks` with a progress bar, in `workers` processes (1: in this process).
    Returns the labels, float64 (len(tasks), 37), in task order."""
    progress = dict(total=len(tasks), unit="img", desc="rendering", mininterval=1.0)
    if workers == 1:
        return np.array([render_to_file(t) for t in tqdm(tasks, **progress)])
    with parallel.process_pool(workers) as pool:
        return np.array(list(tqdm(pool.map(render_to_file, tasks, chunksize=16), **progress)))


def rounded_labels(labels, galaxy_ids):
    """Labels rounded to the CSV's decimals; raises DataError if rounding broke the decision tree."""
    rounded = np.round(labels, DECIMALS)
    bad = decision_tree.tree_violations(rounded, 1e-5)
    if bad:
        row, question, actual, expected = bad[0]
        raise errors.DataError(f"GalaxyID {galaxy_ids[row]}: question {question} sums to {actual}, "
                                  f"expected {expected} after rounding")
    return rounded


def write_solutions_csv(path, galaxy_ids, labels):
    """Write a Kaggle-style solutions CSV atomically: header CSV_HEADER, one row per ID (as given, ascending),
    values with 6 decimals. galaxy_ids: (N,), labels: (N, 37)."""
    rounded = rounded_labels(labels, galaxy_ids)
    lines = [",".join(decision_tree.CSV_HEADER)]
    lines += [f"{g}," + ",".join(f"{v:.{DECIMALS}f}" for v in row) for g, row in zip(galaxy_ids, rounded)]
    with files.atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


# Disk per synthetic image: its JPEG (about 20 kB in the demo's 3,000), with room to spare, and its label row.
JPEG_BYTES = 30_000


def prepare_folders(overwrite, num_images):
    """Create the raw image folders; refuse (DataError) when they already hold images, unless `overwrite`,
    which removes the old images and CSVs first so that a stopped run is still detectable, or when the disk has no
    room for `num_images` images."""
    folders = [paths.raw_images_dir(subset) for subset in paths.SUBSETS]
    files.check_writable(*folders, paths.raw_dir())
    files.check_free_space(paths.raw_dir(), num_images * JPEG_BYTES, f"{num_images} synthetic images")
    for folder in folders:
        old = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        if old and not overwrite:
            raise errors.DataError(f"{folder}: already holds {len(old)} images; "
                                      f"use --overwrite to replace them, or another --root")
        for path in old:
            path.unlink()
        folder.mkdir(parents=True, exist_ok=True)
    for csv_path in (paths.solutions_csv_path(), paths.synthetic_test_solutions_path()):
        if overwrite and csv_path.exists():
            csv_path.unlink()


def read_galaxy_ids(folder):
    """The GalaxyIDs of folder/train_ids.npy and folder/test_ids.npy (e.g. the competition's own lists): (train, test),
    int64, each ascending; DataError unless they are distinct non-negative integers, the two lists disjoint."""
    lists = []
    for subset in paths.SUBSETS:
        path = Path(folder) / f"{subset}_ids.npy"
        try:
            ids = np.load(path)
        except (OSError, ValueError) as exc:
            raise errors.DataError(f"{path}: cannot read as an .npy array of GalaxyIDs: {exc}") from None
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or len(ids) == 0 or (ids < 0).any() \
                or len(np.unique(ids)) != len(ids):
            raise errors.DataError(f"{path}: not a list of distinct non-negative integer GalaxyIDs")
        lists.append(np.sort(ids).astype(np.int64))
    shared = np.intersect1d(*lists)
    if len(shared):
        raise errors.DataError(f"{folder}: GalaxyID {shared[0]} is in both train_ids.npy and test_ids.npy")
    return tuple(lists)


def make_dataset(num_train, num_test, seed, workers, overwrite=False, ids=None):
    """Render both subsets and write their CSVs under the current root: num_train and num_test galaxies of IDs drawn
    from `seed`, or those of ids (train, test) when given. Returns the images per second."""
    if ids is None and (num_train < 1 or num_test < 1):
        raise errors.DataError("--num-train and --num-test must be at least 1")
    subsets = dict(zip(paths.SUBSETS, ids if ids is not None else draw_galaxy_ids(seed, num_train, num_test)))
    prepare_folders(overwrite, sum(map(len, subsets.values())))
    num_train = len(subsets["train"])
    tasks = [(seed, g, paths.raw_images_dir(subset) / f"{g}.jpg")
             for subset, ids in subsets.items() for g in ids]
    start = time.time()
    labels = render_all(tasks, workers)
    rate = len(tasks) / (time.time() - start)
    write_solutions_csv(paths.solutions_csv_path(), subsets["train"], labels[:num_train])
    write_solutions_csv(paths.synthetic_test_solutions_path(), subsets["test"], labels[num_train:])
    return rate


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-train", type=int, default=2700, help="training images (default 2700)")
    parser.add_argument("--num-test", type=int, default=300, help="test images (default 300)")
    runner.add_options(parser, "seed", "workers")
    parser.add_argument("--overwrite", action="store_true", help="replace images already in the raw folders")
    parser.add_argument("--ids-from", default=None, metavar="DIR",
                        help="render the GalaxyIDs of DIR/train_ids.npy and DIR/test_ids.npy (e.g. the competition's "
                             "own lists, for a dataset of the real size) instead of --num-train and --num-test drawn "
                             "ones")
    return parser


def main(argv=None):
    """Command-line entry point; returns the exit status."""

    def work(args):
        ids = None if args.ids_from is None else read_galaxy_ids(args.ids_from)
        rate = make_dataset(args.num_train, args.num_test, args.seed or 0, max(1, args.workers), args.overwrite, ids)
        num_train, num_test = (args.num_train, args.num_test) if ids is None else map(len, ids)
        print(f"{num_train} training + {num_test} test images in {paths.raw_dir()} "
              f"({rate:.1f} images/s with {max(1, args.workers)} workers)")

    return runner.run_script(argument_parser(), work, argv, "the images written are complete; run the same command "
                                "with --overwrite to start again", makes_root=True)


if __name__ == "__main__":
    sys.exit(main())
