"""Where every file of a run lives: the layout under the project root.

    data/raw/training_solutions_rev1.csv
    data/raw/images_train_rev1/<GalaxyID>.jpg
    data/raw/images_test_rev1/<GalaxyID>.jpg
    data/train_ids.npy, data/test_ids.npy, data/solutions_train.npy     (written by the create_* scripts)
    predictions/, analysis/                                              (written by training and prediction)

The root is the project folder, or another one chosen with `--root` or the GALAXY_ROOT environment variable (the
demo and the tests use this so they never touch a user's real data). A `Layout` is the layout under one root: work
handed to other processes carries the Layout it reads from, so no process has to be told the root again.
"""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from galaxyzoo.errors import DataError

PROJECT_DIR = Path(__file__).resolve().parents[1]
SUBSETS = ("train", "test")  # the image folders; the labelled images are split into "train" and "valid" (splits.py)
RAW_IMAGE_FOLDERS = {"train": "images_train_rev1", "test": "images_test_rev1"}
KAGGLE_TRAIN_FOLDER = "images_training_rev1"  # a name the training images are often unpacked under
SOLUTIONS_CSV = "training_solutions_rev1.csv"

_root_override = None
_root_change_callbacks = []  # what readers that keep files in memory forget when the root is set again


def check_subset(subset):
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")


@dataclass(frozen=True)
class Layout:
    """The files under one project root."""
    root: Path

    def data_dir(self):
        return self.root / "data"

    def raw_dir(self):
        return self.data_dir() / "raw"

    def raw_images_dir(self, subset):
        check_subset(subset)
        return self.raw_dir() / RAW_IMAGE_FOLDERS[subset]

    def solutions_csv_path(self):
        return self.raw_dir() / SOLUTIONS_CSV

    def synthetic_test_solutions_path(self):
        """data/raw/synthetic_test_solutions.csv: the synthetic dataset's test labels, read only when scoring."""
        return self.raw_dir() / "synthetic_test_solutions.csv"

    def ids_path(self, subset):
        check_subset(subset)
        return self.data_dir() / f"{subset}_ids.npy"

    def solutions_train_path(self):
        return self.data_dir() / "solutions_train.npy"

    def predictions_dir(self):
        return self.root / "predictions" / "final"

    def augmented_predictions_dir(self, split):
        """predictions/final/augmented/<split>: test-time-averaged predictions (split: 'valid' or 'test')."""
        return self.predictions_dir() / "augmented" / split

    def augmented_predictions_path(self, model_name, split):
        """predictions/final/augmented/<split>/<model_name>.npy.gz: one model's test-time-averaged predictions."""
        return self.augmented_predictions_dir(split) / f"{model_name}.npy.gz"

    def analysis_dir(self):
        return self.root / "analysis" / "final"

    def ram_dir(self):
        """Where `copy_data_to_shm.py` puts the RAM copy: $GALAXY_RAM_DIR, or a folder in /dev/shm named after the
        project root, so two roots never share a copy."""
        env = os.environ.get("GALAXY_RAM_DIR")
        if env:
            return Path(env)
        tag = hashlib.sha1(str(self.root).encode()).hexdigest()[:10]
        return Path("/dev/shm") / f"galaxy-zoo-{tag}"

    def ram_images_dir(self, subset):
        check_subset(subset)
        return self.ram_dir() / RAW_IMAGE_FOLDERS[subset]

    def cache_path(self, subset):
        """The decoded uint8 cache of one subset: an (N, 424, 424, 3) .npy in ID order."""
        check_subset(subset)
        return self.ram_dir() / f"{RAW_IMAGE_FOLDERS[subset]}_uint8.npy"


def root():
    """The project root under which data/, predictions/ and analysis/ live."""
    if _root_override is not None:
        return _root_override
    env = os.environ.get("GALAXY_ROOT")
    return Path(env).resolve() if env else PROJECT_DIR


def set_root(path):
    """Use `path` as the project root for this process (None: back to the default); readers forget what they kept in
    memory (on_root_change), so that files written since are read afresh."""
    global _root_override
    _root_override = None if path is None else Path(path).resolve()
    for callback in _root_change_callbacks:
        callback()


def on_root_change(callback):
    """Call callback() whenever set_root is called."""
    _root_change_callbacks.append(callback)


def current():
    """The Layout under the current root."""
    return Layout(root())


def check_root():
    """DataError when the project root does not exist (a mistyped --root or $GALAXY_ROOT): a run that reads its
    input there is refused before it makes any folder or lock."""
    if not root().is_dir():
        raise DataError(f"{root()}: the project root (--root or $GALAXY_ROOT) does not exist; nothing was written")


def data_dir():
    return current().data_dir()


def raw_dir():
    return current().raw_dir()


def raw_images_dir(subset):
    return current().raw_images_dir(subset)


def solutions_csv_path():
    return current().solutions_csv_path()


def synthetic_test_solutions_path():
    return current().synthetic_test_solutions_path()


def ids_path(subset):
    return current().ids_path(subset)


def solutions_train_path():
    return current().solutions_train_path()


def predictions_dir():
    return current().predictions_dir()


def augmented_predictions_dir(split):
    return current().augmented_predictions_dir(split)


def augmented_predictions_path(model_name, split):
    return current().augmented_predictions_path(model_name, split)


def analysis_dir():
    return current().analysis_dir()


def ram_dir():
    return current().ram_dir()


def ram_images_dir(subset):
    return current().ram_images_dir(subset)


def cache_path(subset):
    return current().cache_path(subset)


def missing_image_folder(folder):
    """The DataError for an image folder that is not there; it names the rename to make when the training images
    lie beside it under KAGGLE_TRAIN_FOLDER."""
    folder = Path(folder)
    misnamed = folder.parent / KAGGLE_TRAIN_FOLDER
    if folder.name == RAW_IMAGE_FOLDERS["train"] and misnamed.is_dir():
        return DataError(f"{folder}: image folder missing, but {misnamed} is there: the scripts read the training "
                         f"images from {folder.name}; rename it (mv {misnamed} {folder})")
    return DataError(f"{folder}: image folder missing")


def real_sample_dir():
    """Where tests and benchmarks look for the slice of the real Kaggle data they use when it is present:
    $GALAXY_REAL_SAMPLE, else ../shared/real_sample beside the project folder. The pipeline never reads it."""
    env = os.environ.get("GALAXY_REAL_SAMPLE")
    return Path(env) if env else PROJECT_DIR.parent / "shared" / "real_sample"
