"""Images per second on one CPU core for the training input pipeline: JPEG decode + both 69x69 views + colour
noise, the fast path (load_data.decode_jpeg to uint8, one cv2.warpAffine per view) against the original
solution's approach (skimage.io.imread, float, skimage warp per channel per view), on the same images with the
same transforms.

    python bench/bench_augmentation.py [--num-images N] [--repeats R] [--seed S] [--folder DIR]

Also timed: the fast path reading the decoded uint8 cache (decode skipped; the cache is a memory-mapped .npy
in a temporary folder, as copy_data_to_shm.py builds it), and the JPEG decode alone.
Uses the real sample's training images (paths.real_sample_dir(); skips with a message when absent).
"""
import argparse
import functools
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import skimage.io

from common import REAL_SAMPLE_TRAIN_IMAGES, fastest
import load_data
from galaxyzoo import realtime_augmentation as ra


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=REAL_SAMPLE_TRAIN_IMAGES, help="folder of <GalaxyID>.jpg images")
    parser.add_argument("--num-images", type=int, default=351, help="images per pass (default: all 351)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per method (interleaved); the fastest counts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the augmentations and colour noise")
    return parser.parse_args()


def fast_from_jpeg(paths, augments):
    """Fast path: (n, 2, 3, 69, 69) float32 views before colour noise."""
    return np.stack([ra.warp_views(load_data.decode_jpeg(p), m) for p, m in zip(paths, augments)])


def reference_from_jpeg(paths, augments):
    """The original's approach: skimage.io.imread, convert to float, skimage warp per channel per view."""
    return np.stack([ra.warp_views_reference(skimage.io.imread(p).astype(np.float32) / 255.0, m)
                     for p, m in zip(paths, augments)])


def fast_from_cache(cache_file, augments):
    """Fast path from the decoded uint8 cache (memory-mapped; one row copied out per image)."""
    cache = np.load(cache_file, mmap_mode="r")
    return np.stack([ra.warp_views(np.array(cache[i]), m) for i, m in enumerate(augments)])


def with_noise(make_views, source, augments, seed):
    """make_views(source, augments) followed by the colour noise, as a training chunk gets it."""
    return ra.add_colour_noise(make_views(source, augments), np.random.default_rng([seed, 1]))


def decode_only(paths, augments):
    """JPEG decode alone (the floor of every path that starts from JPEGs); an empty array, no views."""
    for path in paths:
        load_data.decode_jpeg(path)
    return np.zeros((len(paths), 0, 3, 0, 0), dtype=np.float32)


def main():
    args = parse_args()
    if not args.folder.is_dir():
        print(f"skipped: no images at {args.folder} (the real data sample is absent)")
        return 0
    cv2.setNumThreads(1)  # one core, as in each worker process
    paths = sorted(args.folder.glob("*.jpg"))[:args.num_images]
    rng = np.random.default_rng([args.seed, 0])
    augments = [ra.random_augmentation(rng, **ra.DEFAULT_AUGMENTATION) for _ in paths]
    print(f"{len(paths)} real images, random augmentations (seed {args.seed}), fastest of {args.repeats} passes, "
          f"one process, one OpenCV thread")

    methods = {
        "original approach (float decode + skimage warp)": (reference_from_jpeg, paths),
        "fast path (uint8 decode + cv2.warpAffine)": (fast_from_jpeg, paths),
        "fast path from the uint8 cache": (fast_from_cache, None),
    }
    methods["JPEG decode alone (uint8, no views)"] = (decode_only, paths)
    runs = {name: (float("inf"), None) for name in methods}
    with tempfile.TemporaryDirectory() as folder:
        cache_file = Path(folder) / "cache_uint8.npy"
        np.save(cache_file, np.stack([load_data.decode_jpeg(p) for p in paths]))
        for _ in range(args.repeats):  # methods interleaved, so a busy machine slows all of them alike
            for name, (make_views, source) in methods.items():
                work = functools.partial(with_noise, make_views, cache_file if source is None else source,
                                         augments, args.seed)
                seconds, views = fastest(work, 1)
                runs[name] = min(runs[name], (seconds, views), key=lambda run: run[0])
    decode_seconds, _ = runs.pop("JPEG decode alone (uint8, no views)")
    reference_seconds, reference_views = runs["original approach (float decode + skimage warp)"]
    for name, (seconds, views) in runs.items():
        difference = np.abs(views - reference_views)
        print(f"  {name:50s} {len(paths) / seconds:7.1f} images/s  {1000 * seconds / len(paths):6.2f} ms/image  "
              f"x{reference_seconds / seconds:5.1f}  |diff| max {difference.max():.4f} mean {difference.mean():.5f}")
    print(f"  {'JPEG decode alone (uint8, no views)':50s} {len(paths) / decode_seconds:7.1f} images/s  "
          f"{1000 * decode_seconds / len(paths):6.2f} ms/image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
