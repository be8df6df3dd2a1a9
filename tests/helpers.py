"""What the tests share besides fixtures: the project folder, the tiny model and its try script, labels valid in
the decision tree, the one builder of tiny project roots, isolation from shared data, and a few constants."""
import collections
import contextlib
import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import checkpoints
import convnet
import decision_tree
import load_data

PROJECT_DIR = Path(__file__).resolve().parents[1]

TINY_MODEL_NAME = "try_tiny_test_model"
# The tiny try file's settings beside the defaults (the original recipe's optimiser and stages, scaled by --num-chunks).
TINY_SETTINGS = dict(BATCH_SIZE=4, CHUNK_SIZE=8, VALIDATE_EVERY=2, NUM_CHUNKS_NONORM=1, SEED=3)
TINY_MODEL_SOURCE = '''import convnet


def build_model():
    return convnet.GalaxyConvNet(num_filters=(4, 4, 4, 4), dense_units=16)
'''
MAIN_BLOCK = '''

if __name__ == "__main__":
    train.main(globals())
'''


def try_file_source(settings=TINY_SETTINGS, model_source=TINY_MODEL_SOURCE):
    """The text of a try file: `model_source` (its imports and build_model()), then each setting as NAME = repr(value),
    then the call of the shared loop."""
    lines = [f"{name} = {value!r}" for name, value in settings.items()]
    return '"""A small model on the shared loop, for the tests."""\nimport train\n' + model_source + "\n\n" + \
        "\n".join(lines) + MAIN_BLOCK


def tiny_settings(**changes):
    """TINY_SETTINGS with `changes`."""
    return {**TINY_SETTINGS, **changes}


TINY_RECIPE_SOURCE = try_file_source()

# torch_augmentation.warp_batch against realtime_augmentation.warp_views: warp_views (cv2.warpAffine on uint8)
# rounds its result to whole grey levels, up to half a level (0.5 / 255 = 0.0019608) from the bilinear value that
# grid_sample computes in float32; cv2's fixed-point weights add a little: the measured maximum over 3 seeds, real
# and synthetic images, borders included, is 0.0019637.
WARP_TOLERANCE = 0.5 / 255 + 5e-5


def tiny_model(seed=0, **changes):
    """The network of the tiny try script (with `changes` to its arguments), initialised from `seed`."""
    torch.manual_seed(seed)
    return convnet.GalaxyConvNet(**{**dict(num_filters=(4, 4, 4, 4), dense_units=16), **changes})


def tiny_model_source(**changes):
    """TINY_MODEL_SOURCE building the tiny network with `changes` to its arguments."""
    arguments = ", ".join(f"{name}={value!r}" for name, value in {**dict(num_filters=(4, 4, 4, 4), dense_units=16),
                                                                  **changes}.items())
    return f"import convnet\n\n\ndef build_model():\n    return convnet.GalaxyConvNet({arguments})\n"


def tiny_recipe(folder, source=TINY_RECIPE_SOURCE, model_name=TINY_MODEL_NAME):
    """Write the try script `source` to folder/<model_name>.py and import it; returns its globals (the recipe)."""
    script = folder / f"{model_name}.py"
    script.write_text(source)
    return vars(checkpoints.import_try_script(model_name, script))


def noise_jpeg_bytes(seed, size=(load_data.IMAGE_SIZE, load_data.IMAGE_SIZE), fmt="JPEG"):
    """The bytes of a random-noise RGB image of `size` (width, height) in format `fmt`."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def jpeg_claiming_size(width, height, seed=0):
    """A 424x424 JPEG whose frame header (SOF0) says width x height: what a huge image's header looks like."""
    data = bytearray(noise_jpeg_bytes(seed))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


IMAGE_PROBLEMS = ["missing", "truncated", "not jpeg", "wrong size", "huge"]


def corrupt_image(folder, galaxy_id, problem):
    """Make the image of `galaxy_id` in `folder` bad in one way; returns the text the error must contain."""
    path = folder / f"{galaxy_id}.jpg"
    if problem == "missing":
        path.unlink()
        return "image file missing"
    if problem == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
        return "cannot decode"
    if problem == "not jpeg":
        path.write_bytes(noise_jpeg_bytes(galaxy_id, fmt="PNG"))
        return "not a JPEG"
    if problem == "huge":
        path.write_bytes(jpeg_claiming_size(12000, 12000, galaxy_id))
        return "image is 12000x12000, expected 424x424"
    path.write_bytes(noise_jpeg_bytes(galaxy_id, size=(300, 200)))
    return "image is 300x200, expected 424x424"


def tree_valid_labels(num_rows, rng, zero_fraction=0.2):
    """(num_rows, 37) float64 labels that obey the tree by construction: per question, random fractions
    summing to 1 (some answers set to exactly 0, as in the real data), scaled by the parent answer."""
    labels = np.zeros((num_rows, decision_tree.NUM_OUTPUTS))
    for question_slice, parent in zip(decision_tree.QUESTION_SLICES, decision_tree.PARENT_INDEX):
        width = question_slice.stop - question_slice.start
        weights = rng.random((num_rows, width)) * (rng.random((num_rows, width)) > zero_fraction)
        weights[weights.sum(axis=1) == 0, 0] = 1.0
        fractions = weights / weights.sum(axis=1, keepdims=True)
        scale = 1.0 if parent is None else labels[:, parent:parent + 1]
        labels[:, question_slice] = fractions * scale
    return labels


def random_galaxy(rng):
    """A blurry random blob on a dark noisy sky: uint8 (424, 424, 3)."""
    rows, cols = np.mgrid[0:load_data.IMAGE_SIZE, 0:load_data.IMAGE_SIZE]
    centre = 212 + rng.normal(0, 5, 2)
    radius2 = ((cols - centre[0]) ** 2 + ((rows - centre[1]) / rng.uniform(0.4, 1.0)) ** 2) / rng.uniform(200, 2000)
    image = np.exp(-radius2)[..., None] * rng.uniform(0.4, 1.0, 3) + rng.normal(0.03, 0.01, (424, 424, 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_tiny_root(path, num_train=40, num_test=5, seed=0, galaxy_image=random_galaxy):
    """A project root as the data scripts leave it, built directly: data/train_ids.npy, data/test_ids.npy,
    data/solutions_train.npy (float32 tree-valid labels, with its record) and, unless galaxy_image is None, a JPEG per
    ID under data/raw drawn by galaxy_image(rng) (uint8 (424, 424, 3)). Returns path."""
    rng = np.random.default_rng(seed)
    (path / "data").mkdir(parents=True)
    for subset, count, first_id in (("train", num_train, 100_008), ("test", num_test, 900_001)):
        ids = first_id + 13 * np.arange(count, dtype=np.int64)
        if galaxy_image is not None:
            folder = path / "data" / "raw" / load_data.RAW_IMAGE_FOLDERS[subset]
            folder.mkdir(parents=True)
            for galaxy_id in ids:
                Image.fromarray(galaxy_image(rng)).save(folder / f"{galaxy_id}.jpg", quality=90)
        np.save(path / "data" / f"{subset}_ids.npy", ids)
        if subset == "train":
            train_ids = ids
    write_labels(path, train_ids, tree_valid_labels(num_train, rng).astype(np.float32))
    return path


def write_labels(root, train_ids, labels, csv=None):
    """data/solutions_train.npy under root with its record, as create_solutions_train.py leaves them: made for
    train_ids, from the label CSV `csv` when given (a root without one has nothing else to compare)."""
    inputs = dict(train_ids=load_data.ids_stamp(train_ids))
    if csv is not None:
        inputs["labels_csv"] = load_data.file_stamp(csv)
    load_data.save_npy(Path(root) / "data" / "solutions_train.npy", labels, "create_solutions_train.py", **inputs)


def save_recorded(path, values, galaxy_ids):
    """A predictions file (.npy.gz) with a record saying its rows are galaxy_ids, as the pipeline's steps write them
    (no checkpoint or other input listed). Returns the path."""
    load_data.save_gz(path, values, "a test", ids=load_data.ids_stamp(galaxy_ids))
    return path


def save_predictions(model, split, values):
    """save_recorded for a model's test-time-averaged predictions of `split` ('valid' or 'test') under the current
    root, as predict_augmented_npy.py writes them. Returns the path."""
    ids = load_data.labelled_split().valid_ids if split == "valid" else load_data.load_ids("test")
    return save_recorded(load_data.augmented_predictions_path(model, split), values, ids)


@contextlib.contextmanager
def isolation(monkeypatch, folder):
    """Inside: no RAM copy of anyone's data (GALAXY_RAM_DIR is folder/ram) and no $GALAXY_ROOT; after: the root
    that was set inside forgotten."""
    monkeypatch.setenv("GALAXY_RAM_DIR", str(folder / "ram"))
    monkeypatch.delenv("GALAXY_ROOT", raising=False)
    try:
        yield folder
    finally:
        load_data.set_root(None)


@contextlib.contextmanager
def read_only(folder):
    """Inside: no file can be created in `folder`, made when missing (write permission removed; for root, who
    ignores permissions, the folder is made immutable with chattr, and the test skipped where that is refused)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and (shutil.which("chattr") is None
                      or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0):
        folder.chmod(mode)
        pytest.skip("running as root and chattr +i is missing or refused here: no way to make a folder read-only")
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(mode)


DiskUsage = collections.namedtuple("DiskUsage", "total used free", defaults=(0, 0, 0))  # as shutil.disk_usage


def small_disk(monkeypatch, free):
    """Make every folder report `free` bytes free (shutil.disk_usage, which the free-space checks read)."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(free=free))


def no_space_task(filename):
    """A process-pool task that fails as a write to `filename` on a full disk does."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)


def one_megabyte(k):
    """A process-pool task: task 0 fails, every other returns 1 MiB (a result large enough to fill the pipe)."""
    if k == 0:
        raise ValueError(f"task {k} is bad")
    return np.full(1 << 20, k % 256, dtype=np.uint8)


def torchrun(script, *args, extra_env=None):
    """Run `script args` on 2 CPU ranks; returns the CompletedProcess (output captured)."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT_DIR), OMP_NUM_THREADS="1", **(extra_env or {}))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               str(script), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
