"""Ctrl-C and SIGTERM outside the training loop's first-signal handling: each run below is stopped by SIGINT sent to
its whole process group, as a terminal sends Ctrl-C, at a chosen point; it ends with exit status 130 and one line
saying what is kept and what to do, with no traceback and no temporary file left (before: tracebacks, from the
script and from its worker processes, and exit by SIGINT)."""
import multiprocessing
import os
import signal
import subprocess
import sys

import pytest

from galaxyzoo import paths
from galaxyzoo import runner
from galaxyzoo import checkpoints
from galaxyzoo import parallel
from helpers import PROJECT_DIR, TINY_MODEL_NAME, make_tiny_root, tiny_recipe

# Runs SCRIPT as __main__ with ARGV after wrapping, for each (MODULE, NAME, ON_CALL, SIGNALS, BEFORE) of POINTS,
# MODULE.NAME (NAME may be Class.method): at its ON_CALL-th call the process group gets SIGNALS SIGINTs, before the
# call when BEFORE, else after it (for a generator: after the first item it yields).
DRIVER = """
import functools, inspect, os, runpy, signal, sys, importlib

def interrupt(signals):
    for _ in range(signals):
        os.killpg(0, signal.SIGINT)

def after_first_item(items, signals):
    yield next(items)
    interrupt(signals)
    yield from items

def wrap(module, name, on_call, signals, before):
    path = name.split(".")
    owner = functools.reduce(getattr, path[:-1], importlib.import_module(module))
    original, calls = getattr(owner, path[-1]), []

    def interrupting(*args, **kwargs):
        calls.append(1)
        now = len(calls) == on_call
        if now and before:
            interrupt(signals)
        result = original(*args, **kwargs)
        if now and not before:
            if inspect.isgenerator(result):
                return after_first_item(result, signals)
            interrupt(signals)
        return result

    setattr(owner, path[-1], interrupting)

for point in {points!r}:
    wrap(*point)
sys.argv = {argv!r}
runpy.run_path({script!r}, run_name="__main__")
"""


def interrupted_run(script, argv, *points):
    """Run the driver in its own session (killpg(0) must not reach pytest); returns (exit status, stderr)."""
    driver = DRIVER.format(points=list(points), argv=[str(script), *argv], script=str(script))
    result = subprocess.run([sys.executable, "-c", driver], cwd=PROJECT_DIR, capture_output=True, text=True,
                            timeout=180, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(PROJECT_DIR), OMP_NUM_THREADS="1"))
    return result.returncode, result.stderr


def assert_one_line_stop(status, err, words, root):
    last = err.strip().splitlines()[-1]
    assert status == runner.INTERRUPTED and "Traceback" not in err, err[-3000:]
    assert last.startswith("stopped") and words in last, last
    assert not [path for path in root.rglob("*.tmp")]


@pytest.fixture
def root(isolated):
    return make_tiny_root(isolated / "root", num_train=40, num_test=20)


def interrupted_training(root, folder, point):
    """Train the tiny model for 2 chunks, validating after each, with its script in `folder`, interrupted at
    `point` (see DRIVER); returns (exit status, stderr)."""
    tiny_recipe(folder)
    return interrupted_run(folder / f"{TINY_MODEL_NAME}.py",
                           ["--root", str(root), "--num-chunks", "2", "--validate-every", "1", "--workers", "1"], point)


@pytest.mark.slow
def test_a_second_ctrl_c_while_the_validation_views_are_prepared(root, isolated):
    """The first Ctrl-C asks the loop to stop after the chunk; the second stops at once."""
    status, err = interrupted_training(root, isolated, ("galaxyzoo.realtime_augmentation", "identity_views", 1, 2, True))
    assert_one_line_stop(status, err, "no checkpoint was written yet", root)
    assert not checkpoints.checkpoint_path(TINY_MODEL_NAME).exists()


@pytest.mark.slow
def test_ctrl_c_during_the_final_predictions(root, isolated):
    status, err = interrupted_training(root, isolated, ("galaxyzoo.model_submission", "write", 1, 1, False))
    paths.set_root(root)
    assert_one_line_stop(status, err, f"the last checkpoint, {checkpoints.checkpoint_path(TINY_MODEL_NAME)}", root)


@pytest.mark.slow
def test_a_second_ctrl_c_while_prediction_stops(root, isolated):
    """The second Ctrl-C comes as the workers are being stopped (before, it cut that short and the workers, their
    pool gone, printed tracebacks)."""
    script = isolated / f"{TINY_MODEL_NAME}.py"
    tiny_recipe(isolated)
    subprocess.run([sys.executable, str(script), "--root", str(root), "--num-chunks", "1", "--workers", "0"],
                   check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(PROJECT_DIR)))
    status, err = interrupted_run(PROJECT_DIR / "predict_augmented_npy.py",
                                  [TINY_MODEL_NAME, "--root", str(root), "--script", str(script), "--num-transforms",
                                   "2", "--workers", "1", "--batch-size", "4", "--device", "cpu"],
                                  ("galaxyzoo.checkpoints", "forward_batched", 1, 1, False),
                                  ("concurrent.futures", "ProcessPoolExecutor.shutdown", 1, 1, True))
    assert_one_line_stop(status, err, "the same command continues from there", root)


@pytest.mark.slow
def test_ctrl_c_while_the_cache_is_built(root):
    status, err = interrupted_run(PROJECT_DIR / "copy_data_to_shm.py",
                                  ["--root", str(root), "--subsets", "train", "--cache", "--workers", "2"],
                                  ("galaxyzoo.parallel", "imap_unordered", 1, 2, False))
    assert_one_line_stop(status, err, "no cache is left half-written", paths.ram_dir())
    assert not paths.cache_path("train").exists()


def report_sigint_handler(results):
    results.put(str(signal.getsignal(signal.SIGINT)))


def test_workers_ignore_ctrl_c_from_their_start():
    """A worker forked by the forkserver after a pool started it ignores SIGINT before any of its own code runs
    (before, it had Python's KeyboardInterrupt handler until its initializer ran, and a Ctrl-C in that second of
    imports killed it and broke the pool)."""
    with parallel.process_pool(1, start_method="forkserver"):
        context = multiprocessing.get_context("forkserver")
        results = context.Queue()
        child = context.Process(target=report_sigint_handler, args=(results,))
        child.start()
        handler = results.get(timeout=60)
        child.join(timeout=60)
    assert handler == str(signal.SIG_IGN)
