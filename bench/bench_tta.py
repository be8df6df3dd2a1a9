"""Speed of test-time averaging with the best model (full size, random weights): images per second when
each image is warped into 60 transformed view pairs and all of them go through the network.

    python bench/bench_tta.py                       # 10 images x 60 transforms on CPU, and on CUDA when available
    python bench/bench_tta.py --images 5 --batch-size 64

The views are made in this process (realtime_augmentation.warp_views, one call per image and transform) from
synthetic 424x424 images held in memory, so JPEG decoding is not counted. Printed: the warping and the
forward passes separately and together (the forward passes twice: the first pass of a fresh process, and the
steady state, which the projection uses), as images/s and views/s, and the projected time for the 86,132
images of the real validation split and test set (predict_augmented_npy.py overlaps warping, done in
background processes, with the forward passes, so its time lies between the slower part's and the sum).
"""
import argparse
import time

import numpy as np
import torch

import common  # the project on the import path
from galaxyzoo import convnet
import predict_augmented_npy
from galaxyzoo import realtime_augmentation as ra

FULL_PREDICTION_IMAGES = 6_157 + 79_975  # validation split (10% of 61,578) + test set


def synthetic_images(num, seed=0):
    """num smooth random galaxies on a noisy sky: uint8 (num, 424, 424, 3)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:424, 0:424]
    images = []
    for _ in range(num):
        centre = 211.5 + rng.normal(0, 5, 2)
        radius2 = ((cols - centre[0]) ** 2 + ((rows - centre[1]) / rng.uniform(0.4, 1.0)) ** 2) / rng.uniform(200, 2000)
        image = np.exp(-radius2)[..., None] * rng.uniform(0.4, 1.0, 3) + rng.normal(0.03, 0.01, (424, 424, 3))
        images.append((np.clip(image, 0, 1) * 255).astype(np.uint8))
    return np.stack(images)


def time_warping(images, transforms):
    """All views (N, T, 2, 3, 69, 69) and the seconds spent making them."""
    start = time.perf_counter()
    views = np.stack([np.stack([ra.warp_views(image, t, None) for t in transforms]) for image in images])
    return views, time.perf_counter() - start


def time_forward(model, views, device, batch_size, repeats):
    """(seconds of a first pass over every view pair in a fresh process, with no warm-up; steady-state seconds:
    the fastest of `repeats` further passes). On the CPU the first calls with a new batch shape are slow, and
    a pass has two shapes (full batches and the remainder); the later passes have seen both."""
    def one_pass():
        predict_augmented_npy.predict_views(model, views, device, batch_size)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    one_pass()
    first = time.perf_counter() - start
    steady, _ = common.fastest(one_pass, repeats)
    return first, steady


def report(label, seconds, num_images, num_views):
    hours = FULL_PREDICTION_IMAGES / (num_images / seconds) / 3600
    print(f"  {label:<22} {num_images / seconds:9.2f} images/s {num_views / seconds:10.1f} views/s   "
          f"projected {FULL_PREDICTION_IMAGES:,} images: {hours:7.2f} h")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10, help="images to average over the transforms")
    parser.add_argument("--batch-size", type=int, default=predict_augmented_npy.BATCH_SIZE, help="views per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and the random weights")
    parser.add_argument("--repeats", type=int, default=2, help="steady-state passes, the fastest reported")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = convnet.GalaxyConvNet().eval()
    transforms = ra.tta_transforms()
    images = synthetic_images(args.images, args.seed)
    num_views = args.images * len(transforms)
    print(f"{args.images} images x {len(transforms)} transforms = {num_views} view pairs, "
          f"batches of {args.batch_size}, {torch.get_num_threads()} CPU threads")
    views, warp_seconds = time_warping(images, transforms)
    report("warping (CPU)", warp_seconds, args.images, num_views)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        name = "CPU" if device.type == "cpu" else torch.cuda.get_device_name(device)
        first_seconds, forward_seconds = time_forward(model.to(device), views, device, args.batch_size, args.repeats)
        report(f"forward ({name}), 1st", first_seconds, args.images, num_views)
        report(f"forward ({name})", forward_seconds, args.images, num_views)
        report(f"warp + forward ({name})", warp_seconds + forward_seconds, args.images, num_views)


if __name__ == "__main__":
    main()
