"""Trained models on disk, and running them: checkpoint files, try_*.py scripts, the device, the forward pass.

Training (train.py) writes analysis/final/<model>.pt; prediction (predict_augmented_npy.py) and the demo read it
back through load_trained() without importing the training loop.
"""
import concurrent.futures
import hashlib
import importlib.util
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import load_data
from galaxyzoo import recipe
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import errors



def pick_device(name):
    """torch.device for a --device value: cpu, cuda, cuda:N, or auto (cuda when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise errors.SettingError(f"--device {name}: CUDA is not available on this machine")
    return device


def checkpoint_path(model_name):
    """analysis/final/<model_name>.pt."""
    return paths.analysis_dir() / f"{model_name}.pt"


def submission_path(model_name):
    """predictions/final/<model_name>.csv.gz: the test-set submission a finished training run writes."""
    return paths.predictions_dir() / f"{model_name}.csv.gz"


def training_lock(model_name):
    """files.take_lock for a training run of model_name: analysis/final/<model_name>.lock, the temporaries of its
    checkpoint and learning curve removed. Returns the open lock file."""
    folder = paths.analysis_dir()
    return files.take_lock(folder / f"{model_name}.lock",
                               [checkpoint_path(model_name), folder / f"{model_name}_learning_curve.png"],
                               f"another run of {model_name} is training into the same checkpoint")


class CheckpointNotWritten(errors.DataError):
    """Writing a checkpoint failed (a full disk, say); the file that was there before is unchanged."""


def save_checkpoint(path, state):
    """torch.save(state) with the digest of its contents (content_digest) under DIGEST_KEY, atomically: the
    checkpoint that was there stays as it was when the write fails, which raises CheckpointNotWritten."""
    state = dict(state, **{DIGEST_KEY: content_digest(state)})
    try:
        with files.atomic_path(path) as tmp, open(tmp, "wb") as file:
            torch.save(state, file)  # to a file object: a failed write then raises its OSError, not a RuntimeError
    except OSError as exc:
        kept = "the checkpoint written before is kept as it was" if Path(path).exists() else "no checkpoint was kept"
        raise CheckpointNotWritten(f"{path}: cannot write the checkpoint ({exc.strerror or exc}; "
                                   f"{files.size_text(files.free_bytes(Path(path).parent))} free there); "
                                   f"{kept}; free some space and run the same command again") from None


CHECKPOINT_KEYS = ("model", "config")  # what every checkpoint train.py writes holds, at the least
DIGEST_KEY = "digest"  # the sha256 of a checkpoint's contents (content_digest), which loading verifies


DIGEST_BLOCK = 1 << 24  # bytes hashed on their own, so that the cores share the work on a large checkpoint


def content_digest(state):
    """The digest (hex) of everything in a checkpoint's dict but its digest: every tensor's dtype, shape and bytes, and
    every other value's repr, in key order, cut into blocks of DIGEST_BLOCK bytes whose sha256 digests are hashed in
    turn (hashlib lets other threads run while it hashes, so the blocks are hashed on all cores). torch.load checks
    none of the zip archive's checksums, so that a bit flipped on the disk would otherwise load as another weight."""
    parts = []
    _digest_parts(parts, {key: value for key, value in state.items() if key != DIGEST_KEY})
    blocks = [part[start:start + DIGEST_BLOCK] for part in parts for start in range(0, max(len(part), 1), DIGEST_BLOCK)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        block_digests = list(pool.map(lambda block: hashlib.sha256(block).digest(), blocks))
    return hashlib.sha256(b"".join(block_digests)).hexdigest()


def _digest_parts(parts, value):
    """Append to `parts` the bytes (memoryviews of tensors, without a copy) that content_digest hashes for `value`."""
    if torch.is_tensor(value):
        tensor = value.detach().cpu().contiguous()
        parts.append(f"tensor {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        parts.append(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))  # its bytes, whatever the dtype
    elif isinstance(value, dict):
        parts.append(f"dict {len(value)}\n".encode())
        for key in sorted(value, key=repr):
            parts.append(f"{key!r}:".encode())
            _digest_parts(parts, value[key])
    elif isinstance(value, (list, tuple)):
        parts.append(f"{type(value).__name__} {len(value)}\n".encode())
        for item in value:
            _digest_parts(parts, item)
    else:
        parts.append(f"{value!r}\n".encode())


def first_non_finite(parameters):
    """The name of the first tensor of `parameters` (name -> tensor) that holds NaN or infinity, or None."""
    return next((name for name, tensor in parameters.items()
                 if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())), None)


def check_finite(path, parameters, advice):
    """DataError naming the first tensor of `parameters` (name -> tensor) holding NaN or infinity: a checkpoint saved
    by a run that diverged."""
    name = first_non_finite(parameters)
    if name is not None:
        raise errors.DataError(f"{path}: non-finite parameters (NaN or infinity in {name}), saved by a run that "
                                  f"diverged; {advice}")


def load_checkpoint(path):
    """The dict a checkpoint holds (tensors on the CPU); DataError, in one line and with what to do, when the
    file is empty, damaged, not a checkpoint, or not one that train.py wrote."""
    advice = "delete it (or train with --fresh) to start over, or restore the file"
    if Path(path).stat().st_size == 0:
        raise errors.DataError(f"{path}: checkpoint file is empty (0 bytes); {advice}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive: anything else is damaged or another file
        raise errors.DataError(f"{path}: not a readable checkpoint (not the zip archive torch.save writes: damaged, "
                                  f"cut short, or another kind of file); {advice}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            reason = "it holds objects other than tensors and plain values, which are never loaded"
        raise errors.DataError(f"{path}: not a readable checkpoint ({reason}); {advice}") from None
    if not isinstance(state, dict) or not all(key in state for key in CHECKPOINT_KEYS):
        kind = "a bare state dict" if isinstance(state, dict) and all(torch.is_tensor(v) for v in state.values()) \
            else f"a {type(state).__name__} without {' and '.join(CHECKPOINT_KEYS)}"
        raise errors.DataError(f"{path}: not a checkpoint of this project's training ({kind}); {advice}")
    if DIGEST_KEY not in state:  # older checkpoints still load; the next save of a resumed run adds the digest
        print(f"note: {path}: written before checkpoints carried a digest of their contents, so damage to it cannot "
              f"be found", file=sys.stderr)
    elif content_digest(state) != state[DIGEST_KEY]:
        raise errors.DataError(f"{path}: damaged checkpoint (its contents do not match the digest written with "
                                  f"them: changed on the disk or in a copy since); {advice}")
    return state


def load_model_state(model, state, path, model_name):
    """model.load_state_dict(state), or a DataError saying the checkpoint belongs to another network."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc)).rstrip(".")
        raise errors.DataError(f"{path}: its parameters do not fit the network {model_name}.py builds now "
                                  f"(another model's checkpoint, or build_model() changed since): {detail[:300]}; "
                                  f"train again with --fresh, or restore the script") from None


def import_try_script(model_name, script=None):
    """Import a try_*.py module: the file `script` when one is given (a path the user or the calling code names),
    else <model_name>.py in the project folder. Never a path read from a data file such as a checkpoint: that
    would run whatever code the file points at."""
    path = paths.PROJECT_DIR / f"{model_name}.py" if script is None else Path(script)
    if not path.exists():
        raise errors.DataError(f"{path}: no such model script" + ("" if script is not None else
                                  "; for a script outside the project folder, name it with --script PATH"))
    spec = importlib.util.spec_from_file_location(model_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_stamp():
    """What a run trains and validates on, as its checkpoint records it: the stamps of the training and validation
    IDs (load_data.labelled_split) and of data/solutions_train.npy."""
    split = load_data.labelled_split()
    return {"train_ids": records.ids_stamp(split.train_ids), "valid_ids": records.ids_stamp(split.valid_ids),
            "labels": records.file_stamp(paths.solutions_train_path())}


def check_data(path, state, stamp, advice):
    """DataError unless the checkpoint `state` (read from path) was trained on the data of `stamp` (data_stamp())."""
    if state.get("data") != stamp:
        raise errors.DataError(f"{path}: trained on other training images or labels than "
                                  f"{paths.ids_path('train')} and {paths.solutions_train_path()} hold now"
                                  f"{' (or made before checkpoints recorded them)' if 'data' not in state else ''}, "
                                  f"so its validation split is not the images it held out; {advice}")


def require_checkpoint(model_name, script=None):
    """The path of the model's checkpoint; DataError when there is none, saying whether the model exists at all (its
    script: `script`, or <model_name>.py in the project folder)."""
    path = checkpoint_path(model_name)
    if not path.exists():
        script_path = paths.PROJECT_DIR / f"{model_name}.py" if script is None else Path(script)
        if not script_path.exists():
            raise errors.DataError(f"{model_name}: no such model ({script_path} does not exist and there is no "
                                      f"checkpoint {path}); the models are the try_*.py scripts")
        raise errors.DataError(f"{path}: no checkpoint; train the model with {script_path.name} first")
    return path


def load_trained(model_name, device="cpu", script=None, check_training_data=True):
    """The trained model of analysis/final/<model_name>.pt in eval mode, and its config dict. Refused when it was
    trained on other data than data/train_ids.npy and data/solutions_train.npy hold now, unless not
    check_training_data (a model applied to images of its own, which need not be those it was trained on)."""
    path = require_checkpoint(model_name, script)
    state = load_checkpoint(path)
    if check_training_data:
        check_data(path, state, data_stamp(), f"train it again ({model_name}.py --fresh), or restore those files")
    check_finite(path, state["model"], f"train it again with {model_name}.py --fresh")
    model = import_try_script(model_name, script).build_model()
    load_model_state(model, state["model"], path, model_name)
    return model.to(device).eval(), recipe.config_from_checkpoint(state["config"])


@torch.no_grad()
def forward_batched(model, inputs, device, batch_size, label=None):
    """The model's outputs with dropout off for every input: inputs (N, ...) numpy float32 -> (N, 37) float32
    numpy, batch_size inputs per forward pass, with a progress bar named `label` when one is given. The model's
    train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    flat = torch.from_numpy(np.ascontiguousarray(inputs))
    starts = range(0, len(flat), batch_size)
    if label is not None:
        starts = tqdm(starts, desc=label, unit="batch", dynamic_ncols=True, mininterval=1.0, leave=False)
    outputs = [model(flat[i:i + batch_size].to(device)).float().cpu() for i in starts]
    model.train(was_training)
    return torch.cat(outputs).numpy()


PREDICT_BATCH_SIZE = 64  # images per forward pass when predicting (dropout off, so it does not change results)


def predict_views(model, views, device, label=None):
    """Model outputs with dropout off for views (N, V, 3, S, S) (numpy) -> (N, 37) float32 numpy; a progress bar
    named `label` when one is given."""
    return forward_batched(model, views, device, PREDICT_BATCH_SIZE, label)
