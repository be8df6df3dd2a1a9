"""Speed of the newer members (on pretrained backbones, from random weights, invariant to quarter turns and flips)
beside the best 2014 model, in one run on this machine: parameters, training and inference images/s at each input
size a recipe uses, FLOPs per image (PyTorch's flop counter), and the GPU hours of each full recipe PROJECTED from
those FLOPs at an assumed sustained rate (a projection, not a measurement).

    python bench/bench_members.py                      # batch 8, 1 warm-up + 3 timed steps per row
    python bench/bench_members.py --assumed-tflops 30

Random weights, random inputs; the training step is the loop's (MSE, optimiser step). A head-only stage is counted
at one forward pass per image in the projection, a full stage at three (forward and backward)."""
import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

import common
from galaxyzoo import checkpoints
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import stages
from galaxyzoo import train

BEST = "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense"
MEMBERS = (BEST, "try_resnet50_fastai", "try_resnet50_imagenet", "try_dinov2_vitb14", "try_resnet18_scratch",
           "try_p4m_gcnn72")
TRAINING_IMAGES = 61_578 - 6_157  # the real training split (the last 10% of the IDs validate)


def inputs_of(config):
    """The input declarations a recipe trains at, each with the images it sees there (head-only, full)."""
    chunk_images = TRAINING_IMAGES if config["CHUNK_SIZE"] == "epoch" else config["CHUNK_SIZE"]
    seen = {}
    for stage in (stages.Stage(**stage) for stage in config["STAGES"]):
        head, full = seen.get(stage.input, (0, 0))
        images = stage.chunks * chunk_images
        seen[stage.input] = (head + images, full) if stage.train == "head" else (head, full + images)
    return seen


def flops_per_image(model, views):
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(views)
    return counter.get_total_flops() / len(views)


def images_per_second(step, batch_size, repeats):
    seconds, _ = common.fastest(step, repeats, warmup=1)
    return batch_size / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--assumed-tflops", type=float, default=20.0,
                        help="sustained fp32 TFLOP/s assumed for the GPU projection (default 20)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} CPU threads, batch {args.batch_size}; projection at an ASSUMED "
          f"{args.assumed_tflops:g} TFLOP/s sustained")
    print(f"{'member':<58} {'parameters':>11} {'input':>10} {'GFLOP/img':>10} {'infer img/s':>12} {'train img/s':>12} "
          f"{'projected GPU h':>16}")
    for name in MEMBERS:
        module = checkpoints.import_try_script(name, common.PROJECT_DIR / f"{name}.py")
        config = train.config_of(vars(module))
        model = module.build_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
        parameters = sum(p.numel() for p in model.parameters())
        for declaration, (head_images, full_images) in inputs_of(config).items():
            spec = ra.input_views(declaration)
            views = torch.rand(args.batch_size, spec.num_views, 3, spec.size, spec.size)
            labels = torch.rand(args.batch_size, 37)
            flops = flops_per_image(model, views)

            def infer():
                with torch.no_grad():
                    model(views)

            model.eval()
            inference = images_per_second(infer, args.batch_size, args.repeats)
            model.train()
            training = images_per_second(lambda: train.train_batch(model, optimizer, views, labels, True),
                                         args.batch_size, args.repeats)
            projected = (head_images + 3 * full_images) * flops / (args.assumed_tflops * 1e12) / 3600
            print(f"{name:<58} {parameters:11,} {str(declaration):>10} {flops / 1e9:10.2f} {inference:12.1f} {training:12.2f} "
                  f"{projected:13.1f} (projection)", flush=True)


if __name__ == "__main__":
    main()
