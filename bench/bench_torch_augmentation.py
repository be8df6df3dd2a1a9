"""Views per second: the batched PyTorch warp (torch_augmentation.warp_batch) versus the per-image cv2 path
(realtime_augmentation.warp_views), in one run on the same images and transforms.

    python bench/bench_torch_augmentation.py [--num-images N] [--batch-sizes 16 256] [--repeats R]

Each image gives 2 views (69x69); a "view" below is one of them. Rows:
  cv2 warp_views      one image at a time, one core (what one augmentation worker process does)
  torch cpu           warp_batch on uint8 CPU tensors, with 1 thread (per core) and with all threads
  torch cache+warp+noise  the whole device path from the uint8 DeviceImageCache: index the batch out of the
                      cache, warp, colour noise; on the CPU, and on the GPU when one is present (synchronised)
Images are the real sample's training JPEGs when it is present (paths.real_sample_dir()), else synthetic
blocks.
"""
import argparse
import sys

import numpy as np
import torch

from common import REAL_SAMPLE_TRAIN_IMAGES, fastest
import load_data
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import torch_augmentation as ta


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=256, help="distinct images to warp (default 256)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 256], help="images per warp_batch call")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per row; the fastest counts")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load_images(count, seed):
    """uint8 (count, 424, 424, 3): the real sample's images (cycled) or random blobs."""
    paths = sorted(REAL_SAMPLE_TRAIN_IMAGES.glob("*.jpg"))
    if paths:
        decoded = [load_data.decode_jpeg(p) for p in paths[:count]]
        return np.stack([decoded[i % len(decoded)] for i in range(count)]), f"real sample ({len(decoded)} JPEGs)"
    rng = np.random.default_rng(seed)
    size = load_data.IMAGE_SIZE
    blurred = rng.integers(0, 256, size=(count, size // 8, size // 8, 3), dtype=np.uint8)
    return blurred.repeat(8, axis=1).repeat(8, axis=2), "synthetic blocks"


def cv2_pass(images, augments):
    for image, augment in zip(images, augments):
        ra.warp_views(image, augment)


def torch_pass(batch_images, batch_matrices):
    for images, matrices in zip(batch_images, batch_matrices):
        ta.warp_batch(images, matrices)


def in_batches(array, batch_size):
    return [array[start:start + batch_size] for start in range(0, len(array) - batch_size + 1, batch_size)]


def cpu_rows(images, augments, matrices, batch_sizes, repeats):
    """[(path, device, batch, threads, seconds, views)] for cv2 and torch on the CPU."""
    import cv2
    cv2.setNumThreads(1)
    num_views = 2 * len(images)
    seconds, _ = fastest(lambda: cv2_pass(images, augments), repeats, warmup=1)
    rows = [("cv2 warp_views", "cpu", 1, 1, seconds, num_views)]
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    all_threads = torch.get_num_threads()
    for batch_size in batch_sizes:
        batch_images, batch_matrices = in_batches(tensor, batch_size), in_batches(matrices, batch_size)
        warped = 2 * batch_size * len(batch_images)
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)
            seconds, _ = fastest(lambda: torch_pass(batch_images, batch_matrices), repeats, warmup=1)
            rows.append(("torch warp_batch", "cpu", batch_size, threads, seconds, warped))
    torch.set_num_threads(all_threads)
    return rows


def cache_rows(images, matrices, batch_sizes, repeats, seed, device):
    """Rows for the whole device path on `device`: batch out of the uint8 DeviceImageCache, warp_batch,
    colour noise from a torch.Generator on that device (all threads on the CPU)."""
    device = torch.device(device)
    cache = ta.DeviceImageCache(images, device)
    generator = torch.Generator(device).manual_seed(seed)
    is_cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if is_cuda else "cpu"
    rows = []
    for batch_size in batch_sizes:
        starts = range(0, len(images) - batch_size + 1, batch_size)
        positions = [torch.arange(start, start + batch_size, device=device) for start in starts]
        batch_matrices = [torch.as_tensor(m, device=device) for m in in_batches(matrices, batch_size)]

        def one_pass():
            for where, m in zip(positions, batch_matrices):
                ta.add_colour_noise_torch(cache.views(where, m), generator)

        synchronise = torch.cuda.synchronize if is_cuda else lambda: None
        seconds, _ = fastest(one_pass, repeats, warmup=1, synchronise=synchronise)
        threads = "-" if is_cuda else torch.get_num_threads()
        rows.append(("torch cache+warp+noise", name, batch_size, threads, seconds, 2 * batch_size * len(positions)))
    return rows


def print_table(rows):
    print(f"{'path':<24} {'device':<26} {'batch':>6} {'threads':>8} {'views/s':>12}")
    for path, device, batch, threads, seconds, views in rows:
        print(f"{path:<24} {device:<26} {batch:>6} {threads!s:>8} {views / seconds:>12,.0f}")


def main():
    args = parse_args()
    if max(args.batch_sizes) > args.num_images:
        sys.exit(f"error: --num-images ({args.num_images}) must be at least the largest batch size")
    images, source = load_images(args.num_images, args.seed)
    rng = np.random.default_rng(args.seed)
    augments = [ra.random_augmentation(rng, **ra.DEFAULT_AUGMENTATION) for _ in range(len(images))]
    matrices = np.stack([ra.view_matrices(a) for a in augments])
    print(f"{len(images)} images from {source}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    rows = cpu_rows(images, augments, matrices, args.batch_sizes, args.repeats)
    rows += cache_rows(images, matrices, args.batch_sizes, args.repeats, args.seed, "cpu")
    if torch.cuda.is_available():
        rows += cache_rows(images, matrices, args.batch_sizes, args.repeats, args.seed, "cuda")
    else:
        print("no CUDA device: GPU rows skipped")
    print_table(rows)


if __name__ == "__main__":
    main()
