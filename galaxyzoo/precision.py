"""Numerical precision of training and prediction: strict fp32 by default, as the original; TF32 and bf16
autocast on request.

Every line of the project that only does something on a GPU is in this module or named here, so that what the
CPU test suite cannot run is easy to find (doc/performance.md lists them): the TF32 switches below, the bf16
autocast on CUDA, and, elsewhere, distributed.start's NCCL backend and cuda:LOCAL_RANK device, train.rng_state's
CUDA generators and train.Trainer.trained_module's DistributedDataParallel device_ids.
"""
import contextlib

import torch

AMP_CHOICES = ("off", "bf16")


def add_precision_arguments(parser, amp=True):
    """--tf32 (and, when `amp`, --amp) for a script that runs the network."""
    parser.add_argument("--tf32", action="store_true",
                        help="on CUDA, let matrix products and convolutions use TF32 (a 10-bit mantissa in the "
                        "products; several times faster on Ampere and later GPUs). Default: strict fp32, as the "
                        "original. Does nothing on the CPU")
    if amp:
        parser.add_argument("--amp", choices=AMP_CHOICES, default="off",
                            help="bf16: forward and backward under bfloat16 autocast, on CUDA or on the CPU "
                            "(default off: fp32 as the original)")


def set_tf32(device, enabled):
    """On CUDA, allow TF32 in matrix products and convolutions when `enabled`, else forbid it in both (PyTorch's
    own defaults differ between the two: cuDNN convolutions allow TF32 unless told not to). Returns a line to
    print when the setting cannot apply to `device`, else None."""
    if device.type != "cuda":
        return f"--tf32 does nothing on {device.type}: it applies to CUDA only" if enabled else None
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return None


def autocast_context(device, amp):
    """bfloat16 autocast on `device` for amp == "bf16"; a context that changes nothing for "off"."""
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
