"""What the benchmarks share: the project folder on the import path (import this module before the project's), the
real sample's training images, and the timing loop."""
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

from galaxyzoo import paths  # noqa: E402

REAL_SAMPLE_TRAIN_IMAGES = paths.real_sample_dir() / "images_train_rev1"
REAL_SAMPLE_LABELS = "training_solutions_rev1_sample.csv"


def real_sample_or_exit():
    """The real sample's folder; the benchmark ends with a message when it holds no labels."""
    sample = paths.real_sample_dir()
    if not (sample / REAL_SAMPLE_LABELS).is_file():
        sys.exit(f"no real sample at {sample}: set $GALAXY_REAL_SAMPLE")
    return sample


def fastest(function, repeats, warmup=0, synchronise=lambda: None):
    """(smallest wall time in seconds of function() over `repeats` calls after `warmup` untimed ones, the last
    result). synchronise() runs before each clock reading (torch.cuda.synchronize for GPU work)."""
    for _ in range(warmup):
        function()
    synchronise()
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        synchronise()
        best = min(best, time.perf_counter() - start)
    return best, result
