"""precision.py: strict fp32 on CUDA unless --tf32 (the switches are plain settings, so a CUDA device object tests
them without a GPU), the one-line note on the CPU, and a short training run under CPU bf16 autocast."""
import math

import pytest
import torch

from galaxyzoo import checkpoints
from galaxyzoo import precision
from galaxyzoo import train
from helpers import TINY_MODEL_NAME, make_tiny_root, tiny_recipe
from galaxyzoo import paths

SWITCHES = ("matmul", "cudnn")


def tf32_switches():
    return {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}


@pytest.fixture
def restored_switches():
    before = tf32_switches()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before["matmul"], before["cudnn"]


def test_cuda_is_strict_fp32_unless_tf32_is_asked_for(restored_switches):
    cuda = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    assert precision.set_tf32(cuda, enabled=False) is None
    assert tf32_switches() == {name: False for name in SWITCHES}
    assert precision.set_tf32(cuda, enabled=True) is None
    assert tf32_switches() == {name: True for name in SWITCHES}


def test_tf32_on_the_cpu_says_it_does_nothing(restored_switches):
    before = tf32_switches()
    note = precision.set_tf32(torch.device("cpu"), enabled=True)
    assert "does nothing on cpu" in note
    assert precision.set_tf32(torch.device("cpu"), enabled=False) is None
    assert tf32_switches() == before


def test_bf16_autocast_trains_on_the_cpu_close_to_fp32(isolated):
    root = make_tiny_root(isolated / "root", num_train=20, num_test=2)
    losses = {}
    for amp in ("off", "bf16"):
        (isolated / amp).mkdir()
        recipe = tiny_recipe(isolated / amp)
        train.main(recipe, ["--root", str(root), "--num-chunks", "3", "--workers", "0", "--fresh", "--amp", amp])
        paths.set_root(root)
        losses[amp] = checkpoints.load_checkpoint(checkpoints.checkpoint_path(TINY_MODEL_NAME))["losses_train"]
    print(f"train RMSE per chunk: fp32 {losses['off']}, bf16 {losses['bf16']}")
    assert len(losses["bf16"]) == 3 and all(math.isfinite(loss) for loss in losses["bf16"])
    assert losses["bf16"] != losses["off"]  # autocast was in force: bf16 rounding changed the numbers
    for fp32, bf16 in zip(losses["off"], losses["bf16"]):
        assert abs(bf16 - fp32) < 0.02 * fp32
