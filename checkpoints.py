"""Trained models on disk, and running them: checkpoint files, try_*.py scripts, the device, the forward pass.

Training (train.py) writes analysis/final/<model>.pt; prediction (predict_augmented_npy.py) and the demo read it
back through load_trained() without importing the training loop.
"""
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import load_data
import recipe

HERE = Path(__file__).resolve().parent


def pick_device(name):
    """torch.device for a --device value: cpu, cuda, cuda:N, or auto (cuda when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def checkpoint_path(model_name):
    """analysis/final/<model_name>.pt."""
    return load_data.analysis_dir() / f"{model_name}.pt"


def submission_path(model_name):
    """predictions/final/<model_name>.csv.gz: the test-set submission a finished training run writes."""
    return load_data.predictions_dir() / f"{model_name}.csv.gz"


def training_lock(model_name):
    """load_data.take_lock for a training run of model_name: analysis/final/<model_name>.lock, the temporaries of its
    checkpoint and learning curve removed. Returns the open lock file."""
    folder = load_data.analysis_dir()
    return load_data.take_lock(folder / f"{model_name}.lock",
                               [checkpoint_path(model_name), folder / f"{model_name}_learning_curve.png"],
                               f"another run of {model_name} is training into the same checkpoint")


def save_checkpoint(path, state):
    """torch.save(state), atomically."""
    with load_data.atomic_path(path) as tmp:
        torch.save(state, tmp)


CHECKPOINT_KEYS = ("model", "config")  # what every checkpoint train.py writes holds, at the least


def load_checkpoint(path):
    """The dict a checkpoint holds (tensors on the CPU); DataError, in one line and with what to do, when the
    file is empty, damaged, not a checkpoint, or not one that train.py wrote."""
    advice = "delete it (or train with --fresh) to start over, or restore the file"
    if Path(path).stat().st_size == 0:
        raise load_data.DataError(f"{path}: checkpoint file is empty (0 bytes); {advice}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive: anything else is damaged or another file
        raise load_data.DataError(f"{path}: not a readable checkpoint (not the zip archive torch.save writes: damaged, "
                                  f"cut short, or another kind of file); {advice}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            reason = "it holds objects other than tensors and plain values, which are never loaded"
        raise load_data.DataError(f"{path}: not a readable checkpoint ({reason}); {advice}") from None
    if not isinstance(state, dict) or not all(key in state for key in CHECKPOINT_KEYS):
        kind = "a bare state dict" if isinstance(state, dict) and all(torch.is_tensor(v) for v in state.values()) \
            else f"a {type(state).__name__} without {' and '.join(CHECKPOINT_KEYS)}"
        raise load_data.DataError(f"{path}: not a checkpoint of this project's training ({kind}); {advice}")
    return state


def load_model_state(model, state, path, model_name):
    """model.load_state_dict(state), or a DataError saying the checkpoint belongs to another network."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc)).rstrip(".")
        raise load_data.DataError(f"{path}: its parameters do not fit the network {model_name}.py builds now "
                                  f"(another model's checkpoint, or build_model() changed since): {detail[:300]}; "
                                  f"train again with --fresh, or restore the script") from None


def import_try_script(model_name, script=None):
    """Import a try_*.py module: the file `script` when one is given (a path the user or the calling code names),
    else <model_name>.py in the project folder. Never a path read from a data file such as a checkpoint: that
    would run whatever code the file points at."""
    path = HERE / f"{model_name}.py" if script is None else Path(script)
    if not path.exists():
        raise load_data.DataError(f"{path}: no such model script" + ("" if script is not None else
                                  "; for a script outside the project folder, name it with --script PATH"))
    spec = importlib.util.spec_from_file_location(model_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_stamp():
    """What a run trains and validates on, as its checkpoint records it: the stamps of the training and validation
    IDs (load_data.labelled_split) and of data/solutions_train.npy."""
    split = load_data.labelled_split()
    return {"train_ids": load_data.ids_stamp(split.train_ids), "valid_ids": load_data.ids_stamp(split.valid_ids),
            "labels": load_data.file_stamp(load_data.solutions_train_path())}


def check_data(path, state, stamp, advice):
    """DataError unless the checkpoint `state` (read from path) was trained on the data of `stamp` (data_stamp())."""
    if state.get("data") != stamp:
        raise load_data.DataError(f"{path}: trained on other training images or labels than "
                                  f"{load_data.ids_path('train')} and {load_data.solutions_train_path()} hold now"
                                  f"{' (or made before checkpoints recorded them)' if 'data' not in state else ''}, "
                                  f"so its validation split is not the images it held out; {advice}")


def load_trained(model_name, device="cpu", script=None, check_training_data=True):
    """The trained model of analysis/final/<model_name>.pt in eval mode, and its config dict. Refused when it was
    trained on other data than data/train_ids.npy and data/solutions_train.npy hold now, unless not
    check_training_data (a model applied to images of its own, which need not be those it was trained on)."""
    path = checkpoint_path(model_name)
    if not path.exists():
        raise load_data.DataError(f"{path}: no checkpoint; train the model with {model_name}.py first")
    state = load_checkpoint(path)
    if check_training_data:
        check_data(path, state, data_stamp(), f"train it again ({model_name}.py --fresh), or restore those files")
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
