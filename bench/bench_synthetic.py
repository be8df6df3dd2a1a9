"""Time the synthetic galaxy generator on one core, and the demo dataset (3000 images) with 2 workers.

    python bench/bench_synthetic.py [--num-images 200] [--seed 0] [--full]

Prints images/s for rendering alone and for rendering plus JPEG encoding, in this process (one core).
The time of the 3000-image demo set with 2 workers is estimated from that per-core rate (assuming perfect
scaling); --full measures it instead by running make_synthetic_data in a temporary root.
"""
import argparse
import tempfile
import time

import common  # noqa: F401  (the project on the import path)
import make_synthetic_data
from galaxyzoo import synthetic_galaxies
from galaxyzoo import paths

DEMO_TRAIN, DEMO_TEST, DEMO_WORKERS = 2700, 300, 2


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=200, help="images rendered per timing (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="measure the 3000-image demo set with 2 workers")
    return parser.parse_args()


def images_per_second(count, seed, encode):
    """Render `count` examples (and JPEG-encode them when `encode`) in this process; returns images/s."""
    start = time.perf_counter()
    for index in range(count):
        image = synthetic_galaxies.make_example(seed, index)[0]
        if encode:
            synthetic_galaxies.encode_jpeg(image)
    return count / (time.perf_counter() - start)


def measure_demo_set(seed):
    """Seconds make_synthetic_data takes for the demo set with DEMO_WORKERS workers in a temporary root."""
    with tempfile.TemporaryDirectory() as root:
        paths.set_root(root)
        start = time.perf_counter()
        make_synthetic_data.make_dataset(DEMO_TRAIN, DEMO_TEST, seed, DEMO_WORKERS)
        paths.set_root(None)
        return time.perf_counter() - start


def main():
    args = parse_args()
    render = images_per_second(args.num_images, args.seed, encode=False)
    both = images_per_second(args.num_images, args.seed, encode=True)
    print(f"one core, {args.num_images} images: render {render:.1f} images/s, render + JPEG {both:.1f} images/s")
    total = DEMO_TRAIN + DEMO_TEST
    if args.full:
        print(f"demo set ({total} images, {DEMO_WORKERS} workers): measured {measure_demo_set(args.seed):.1f} s")
    else:
        print(f"demo set ({total} images, {DEMO_WORKERS} workers): about {total / (both * DEMO_WORKERS):.0f} s "
              f"(an estimate from the one-core rate; --full measures it)")


if __name__ == "__main__":
    main()
