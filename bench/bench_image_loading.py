"""Time loading one image as float32 (424, 424, 3): JPEG decode versus the decoded uint8 cache.

    python bench/bench_image_loading.py [--num-images N] [--repeats R] [--folder DIR]

Uses the real sample's training images (paths.real_sample_dir(); skips with a message when absent). The
cache is built with copy_data_to_shm.write_cache in a temporary folder ($TMPDIR, or /dev/shm with --in-ram) and
read through a memory map, so after it was written its pages are in the page cache, as for a cache in /dev/shm.
Both ways are timed on the same images in the same run, and must give identical arrays.
"""
import argparse
import functools
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import REAL_SAMPLE_TRAIN_IMAGES, fastest
import copy_data_to_shm
import load_data


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=REAL_SAMPLE_TRAIN_IMAGES, help="folder of <GalaxyID>.jpg images")
    parser.add_argument("--num-images", type=int, default=351, help="images to load (default: all 351)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the images; the fastest counts")
    parser.add_argument("--in-ram", action="store_true", help="put the cache in /dev/shm instead of $TMPDIR")
    return parser.parse_args()


def to_float(image_uint8):
    return image_uint8.astype(np.float32) / 255.0


def keep_uint8(image_uint8):
    return image_uint8


def from_jpeg(paths, galaxy_ids, convert):
    """Decode each JPEG and apply `convert`; returns the list of (424, 424, 3) arrays."""
    return [convert(load_data.decode_jpeg(p, g)) for p, g in zip(paths, galaxy_ids)]


def from_cache(cache_file, count, convert):
    """Copy each row out of the memory-mapped uint8 cache and apply `convert`."""
    cache = np.load(cache_file, mmap_mode="r")
    return [convert(np.array(cache[i])) for i in range(count)]


def main():
    args = parse_args()
    if not args.folder.is_dir():
        print(f"skipped: no images at {args.folder} (the real data sample is absent)")
        return 0
    paths = sorted(args.folder.glob("*.jpg"))[:args.num_images]
    galaxy_ids = [int(p.stem) for p in paths]
    with tempfile.TemporaryDirectory(dir="/dev/shm" if args.in_ram else None) as folder:
        cache_file = Path(folder) / "cache_uint8.npy"
        copy_data_to_shm.write_cache(cache_file, galaxy_ids, paths, workers=1, desc="build cache")
        print(f"{len(paths)} images, fastest of {args.repeats} passes, cache in {folder}")
        all_identical = True
        for convert, label in ((to_float, "float32"), (keep_uint8, "uint8")):
            load_jpegs = functools.partial(from_jpeg, paths, galaxy_ids, convert)
            load_cached = functools.partial(from_cache, cache_file, len(paths), convert)
            jpeg_seconds, jpeg_images = fastest(load_jpegs, args.repeats)
            cache_seconds, cache_images = fastest(load_cached, args.repeats)
            identical = all(np.array_equal(a, b) for a, b in zip(jpeg_images, cache_images))
            all_identical &= identical
            print(f"  -> {label:7s}  JPEG decode {1000 * jpeg_seconds / len(paths):6.3f} ms/image, "
                  f"cache {1000 * cache_seconds / len(paths):6.3f} ms/image, "
                  f"cache {jpeg_seconds / cache_seconds:4.1f}x faster, identical arrays: {identical}")
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
