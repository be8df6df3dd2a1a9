"""Time the checks of derived files against what they were made from, at the real data's size.

    python bench/bench_records.py [--num-train 61578] [--num-test 79975] [--checkpoint-mb 340] [--repeats 3]

Builds, in a temporary folder, a project root whose image folders hold as many files as the competition's (stubs of
a few bytes: the checks read names, sizes and modification times, never pixels), then times each check
a step makes at its start, next to the bare operation it is built on (listing a folder; reading a file):
the ID list against its folder (load_data.load_ids), an image folder's stamp (records.folder_stamp, as the RAM copy,
cache and source-extraction checks make it), and a file's content stamp (records.file_stamp) of a checkpoint-sized
and a label-CSV-sized file. Each figure is the fastest of --repeats runs, with the files in the page cache.
"""
import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from common import fastest
import load_data
from galaxyzoo import paths
from galaxyzoo import records

LABEL_CSV_MB = 60  # about the size of training_solutions_rev1.csv for 61,578 galaxies


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-train", type=int, default=61578)
    parser.add_argument("--num-test", type=int, default=79975)
    parser.add_argument("--checkpoint-mb", type=int, default=340, help="size of the checkpoint-sized file (MB)")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def full_size_root(folder, counts):
    """Image folders of counts {subset: n} stub files, and the ID lists; returns the root."""
    for subset, count in counts.items():
        images = folder / "data" / "raw" / paths.RAW_IMAGE_FOLDERS[subset]
        images.mkdir(parents=True)
        ids = 100_000 + np.arange(count, dtype=np.int64)
        for galaxy_id in ids:
            (images / f"{galaxy_id}.jpg").write_bytes(b"\xff\xd8\xff\xd9")
        np.save(folder / "data" / f"{subset}_ids.npy", ids)
    return folder


def row(name, seconds, reference_name, reference_seconds):
    print(f"{name:<44} {seconds * 1000:9.1f} ms   {reference_name:<28} {reference_seconds * 1000:9.1f} ms")


def main():
    args = parse_args()
    counts = {"train": args.num_train, "test": args.num_test}
    with tempfile.TemporaryDirectory() as tmp:
        root = full_size_root(Path(tmp), counts)
        paths.set_root(root)
        print(f"{sum(counts.values())} image files ({counts['train']} train, {counts['test']} test); "
              f"fastest of {args.repeats}")
        for subset in paths.SUBSETS:
            folder = paths.raw_images_dir(subset)

            def check_ids():
                load_data.forget_cached()
                return load_data.load_ids(subset)

            def stamp():
                load_data.forget_cached()
                return records.folder_stamp(folder)

            listing, _ = fastest(lambda: os.listdir(folder), args.repeats, warmup=1)
            row(f"load_ids('{subset}') against its folder", fastest(check_ids, args.repeats, warmup=1)[0],
                "os.listdir of the folder", listing)
            row(f"folder_stamp of {subset} ({counts[subset]} files)", fastest(stamp, args.repeats, warmup=1)[0],
                "os.listdir of the folder", listing)
        for name, megabytes in (("checkpoint", args.checkpoint_mb), ("label CSV", LABEL_CSV_MB)):
            path = Path(tmp) / f"{name}.bin"
            path.write_bytes(np.random.default_rng(0).bytes(megabytes << 20))
            reading, _ = fastest(lambda: path.read_bytes() and None, args.repeats, warmup=1)
            row(f"file_stamp of a {megabytes} MB file ({name})", fastest(lambda: records.file_stamp(path),
                                                                        args.repeats, warmup=1)[0],
                "reading the file", reading)


if __name__ == "__main__":
    main()
