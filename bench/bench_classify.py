"""Speed of classify_images.py on the CPU: images per second for one model and for a blend of two, beside the parts of
the same work timed alone in the same run (reading and resampling the files, warping the views, the forward passes),
so that the share of the model and of the image handling shows.

    python bench/bench_classify.py                          # 12 images of 600x600, 6 transforms, 2 threads
    python bench/bench_classify.py --images 24 --size 424 --num-transforms 60

The models are the best model and the maxout2048 member at full size with random weights (standard initialisation):
the speed does not depend on the weights. The images are synthetic galaxies written as JPEGs of --size pixels, so
that they are resampled to 424x424 as a user's would be.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import common  # the project on the import path
from galaxyzoo import checkpoints
import classify_images
import layers
import predict_augmented_npy
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import recipe
from bench_tta import synthetic_images
from galaxyzoo import paths

MODELS = ("try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense", "try_convnet_cc_multirotflip_3x69r45_maxout2048")


def write_images(folder, num, size):
    """num synthetic galaxies as JPEGs of size x size in folder; returns [(name, path)]."""
    folder.mkdir()
    for k, pixels in enumerate(synthetic_images(num)):
        Image.fromarray(pixels).resize((size, size), Image.LANCZOS).save(folder / f"{k:04d}.jpg", quality=90)
    return classify_images.list_images([folder])


def save_random_checkpoints(seed=0):
    """A checkpoint with random weights under the current root for every model of MODELS."""
    for k, model in enumerate(MODELS):
        torch.manual_seed(seed + k)
        network = checkpoints.import_try_script(model).build_model()
        layers.reinitialise_standard(network)
        checkpoints.save_checkpoint(checkpoints.checkpoint_path(model),
                                    dict(model=network.state_dict(), config=recipe.Recipe().config()))


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=600, help="side of the test images in pixels")
    parser.add_argument("--num-transforms", type=int, default=6, help="test-time transforms per image (recipe: 60)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as folder:
        paths.set_root(folder)
        save_random_checkpoints()
        images = write_images(Path(folder) / "images", args.images, args.size)
        members = [classify_images.Member(model, device, "original", args.num_transforms) for model in MODELS]
        print(f"{args.images} JPEGs of {args.size}x{args.size}, {args.num_transforms} transforms per image, "
              f"{args.threads} torch threads, CPU")

        read_seconds, pixels = timed(lambda: np.stack([classify_images.read_image(path) for _, path in images]))
        warp_seconds, views = timed(lambda: np.stack([
            ra.to_float(ra.warp_uint8(image, np.stack([ra.view_matrices(t, None, members[0].views)
                                                       for t in members[0].transforms]), members[0].views.size))
            for image in pixels]))
        print(f"  reading and resampling the files      {args.images / read_seconds:8.1f} images/s")
        print(f"  warping the views (one model)         {args.images / warp_seconds:8.1f} images/s")
        for count, label in ((1, "one model"), (2, "blend of two models")):
            chosen = members[:count]
            predict_augmented_npy.predict_views(chosen[0].model, views[:1], device)  # warm-up
            forward = sum(timed(lambda m=member: predict_augmented_npy.predict_views(m.model, views, device))[0]
                          for member in chosen)
            weights = np.full(count, 1.0 / count)
            whole = timed(lambda: classify_images.classify(images, chosen, weights, device,
                                                           predict_augmented_npy.BATCH_SIZE, {}, lambda done: None))[0]
            print(f"{label}: classify_images {args.images / whole:6.2f} images/s; forward passes alone "
                  f"{args.images / forward:6.2f} images/s ({100 * forward / whole:.0f}% of the time), the rest "
                  f"(reading, resampling, warping) {100 * (whole - forward) / whole:.0f}%")


if __name__ == "__main__":
    main()
