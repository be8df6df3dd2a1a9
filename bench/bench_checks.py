"""The cost of the checks that stop a damaged checkpoint or a diverged run, at the best model's full size (about 42M
parameters), each next to the work it is added to, timed in the same run:

  - the digest that loading verifies (checkpoints.content_digest, sha256 over every tensor) against torch.load of
    the same checkpoint (parameters and Nesterov velocities, about 339 MB; the file in the page cache, as after a
    write, so that the load is not timed at the disk's speed);
  - the finiteness check of every training step (one sum over the gradients, and the loss read back, which the
    loop did before) against the step itself (forward, backward, Nesterov update on a minibatch of 16).

    python bench/bench_checks.py [--repeats 3] [--steps 5] [--device cpu|cuda]
"""
import argparse
import tempfile
from pathlib import Path

import torch

import common  # noqa: F401  (the project on the import path)
from galaxyzoo import checkpoints
from galaxyzoo import decision_tree
from galaxyzoo import stages
from galaxyzoo import train

MODEL = "try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense"


def checkpoint_state(model):
    """What train.py saves that is of any size: the parameters and one velocity per parameter (random values)."""
    optimizer = stages.NesterovMomentum(model.parameters(), lr=0.004)
    for parameter in model.parameters():
        optimizer.state[parameter]["velocity"] = torch.randn_like(parameter)
    return dict(model=model.state_dict(), optimizer=optimizer.state_dict(), config={"MODEL": MODEL})


def time_loading(model, repeats):
    """(file size in bytes, fastest torch.load in s, fastest content_digest in s, fastest load_checkpoint in s)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.pt"
        checkpoints.save_checkpoint(path, checkpoint_state(model))
        load_time, state = common.fastest(lambda: torch.load(path, map_location="cpu", weights_only=True), repeats)
        digest_time, _ = common.fastest(lambda: checkpoints.content_digest(state), repeats)
        verified_time, _ = common.fastest(lambda: checkpoints.load_checkpoint(path), repeats)
        return path.stat().st_size, load_time, digest_time, verified_time


def time_step_check(model, device, steps):
    """(fastest training step in s, fastest finiteness check of its loss and gradients in s)."""
    model = model.to(device).train()
    optimizer = stages.NesterovMomentum(model.parameters(), lr=0.004)
    generator = torch.Generator().manual_seed(0)
    views = torch.rand(16, 2, 3, 69, 69, generator=generator).to(device)
    labels = torch.rand(16, decision_tree.NUM_OUTPUTS, generator=generator).to(device)
    synchronise = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    step_time, _ = common.fastest(lambda: train.train_batch(model, optimizer, views, labels, True), steps, warmup=1,
                                  synchronise=synchronise)
    loss = torch.nn.functional.mse_loss(model(views), labels)

    def check():
        gradient_sum = sum(p.grad.sum() for p in model.parameters() if p.grad is not None)
        return loss.item(), bool(torch.isfinite(torch.as_tensor(gradient_sum)))

    check_time, _ = common.fastest(check, steps, warmup=1, synchronise=synchronise)
    return step_time, check_time


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed loads of the checkpoint (the fastest counts)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps and checks (the fastest counts)")
    parser.add_argument("--device", default="cpu", help="where the training step runs: cpu or cuda")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = checkpoints.import_try_script(MODEL).build_model()
    print(f"{MODEL}: {sum(p.numel() for p in model.parameters()):,} parameters; {torch.get_num_threads()} threads")

    size, load_time, digest_time, verified_time = time_loading(model, args.repeats)
    print(f"checkpoint of {size / 1e6:.0f} MB: torch.load {load_time:.3f} s (reference), its digest "
          f"{digest_time:.3f} s ({digest_time / load_time:.0%} of the load, {size / 1e9 / digest_time:.2f} GB/s), "
          f"load_checkpoint with the digest verified {verified_time:.3f} s")

    step_time, check_time = time_step_check(model, torch.device(args.device), args.steps)
    print(f"training step on {args.device}, minibatch of 16: {step_time * 1e3:.1f} ms (reference), the finiteness "
          f"check of its loss and gradients {check_time * 1e3:.2f} ms ({check_time / step_time:.1%} of the step)")


if __name__ == "__main__":
    main()
