"""Training speed of the best model (full size, about 42M parameters), in images per second.

    python bench/bench_training.py                    # CPU variants, and CUDA when available
    python bench/bench_training.py --steps 20 --device cpu --no-compile

Each variant builds the model with the same seed and runs `--warmup` untimed then `--steps` timed
updates (forward, MSE loss, backward, Nesterov step) on one fixed random minibatch, so only the network
and the optimiser are measured, not the data pipeline. Printed as a table with the projected hours for
the full recipe (25 million images).
"""
import argparse
import time

import torch

import common  # noqa: F401  (the project on the import path)
import checkpoints
import convnet
import decision_tree
import stages
import train

RECIPE_IMAGES = 25_000_000  # 2500 chunks of 10000 images


def make_batch(batch_size, device, seed=0):
    """A fixed random minibatch: views (B, 2, 3, 69, 69) in [0, 1] and labels (B, 37)."""
    generator = torch.Generator().manual_seed(seed)
    views = torch.rand(batch_size, 2, 3, 69, 69, generator=generator)
    labels = torch.rand(batch_size, decision_tree.NUM_OUTPUTS, generator=generator)
    return views.to(device), labels.to(device)


def images_per_second(device, batch_size, steps, warmup, channels_last=False, compile_model=False):
    """Time `steps` training updates of the full model after `warmup` untimed ones; returns images/s."""
    torch.manual_seed(0)
    model = convnet.GalaxyConvNet().to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile_model else model
    optimizer = stages.NesterovMomentum(model.parameters(), lr=0.004, momentum=0.9)
    views, labels = make_batch(batch_size, device)
    for _ in range(warmup):
        train.train_batch(step_model, optimizer, views, labels, normalise=True)
    synchronise(device)
    start = time.perf_counter()
    for _ in range(steps):
        train.train_batch(step_model, optimizer, views, labels, normalise=True)
    synchronise(device)
    return steps * batch_size / (time.perf_counter() - start)


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_variants(include_compile):
    """(label, thread count, keyword arguments of images_per_second) for each CPU variant."""
    threads = torch.get_num_threads()
    variants = [(f"fp32, {threads} threads", threads, {}),
                (f"fp32 channels_last, {threads} threads", threads, dict(channels_last=True))]
    variants += [(f"fp32, {n} thread{'s' if n > 1 else ''}", n, {}) for n in sorted({1, max(1, threads // 2)}) if n != threads]
    if include_compile:
        variants.append((f"torch.compile, {threads} threads", threads, dict(compile_model=True)))
    return variants


def run_variant(label, device, args, threads=None, **kwargs):
    """One table row: (label, images/s or None, note)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return label, images_per_second(device, args.batch_size, args.steps, args.warmup, **kwargs), ""
    except Exception as exc:  # report a variant that does not work here instead of aborting the table
        return label, None, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    finally:
        torch.set_num_threads(previous)


def print_table(rows):
    print(f"{'variant':<44} {'images/s':>9} {'hours for 25M images':>21}")
    for label, speed, note in rows:
        if speed is None:
            print(f"{label:<44} {'-':>9} {'-':>21}  {note}")
        else:
            print(f"{label:<44} {speed:>9.2f} {RECIPE_IMAGES / speed / 3600:>21.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed updates per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed updates before timing")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (CPU variants, plus CUDA when available)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size) < 1 or args.warmup < 0:
        parser.error("--steps and --batch-size must be at least 1, --warmup at least 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")

    model = convnet.GalaxyConvNet()
    print(f"best model: {convnet.count_parameters(model):,} parameters; batch {args.batch_size}, "
          f"{args.warmup} warm-up + {args.steps} timed updates per variant")
    del model
    rows = []
    if args.device in ("auto", "cpu"):
        cpu = torch.device("cpu")
        rows += [run_variant(label, cpu, args, threads, **kwargs)
                 for label, threads, kwargs in cpu_variants(not args.no_compile)]
    if args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available()):
        device = checkpoints.pick_device(args.device if args.device != "auto" else "cuda")
        name = torch.cuda.get_device_name(device)
        rows.append(run_variant(f"CUDA fp32 ({name})", device, args))
        rows.append(run_variant(f"CUDA fp32 channels_last ({name})", device, args, channels_last=True))
    print_table(rows)


if __name__ == "__main__":
    main()
