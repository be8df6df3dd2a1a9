"""The source-extraction parameter files: their names, their columns, and reading them back.

`extract_pysex_params.py` writes them (step 3); training and prediction read them for the members whose
recipe centres or rescales the input (PREPROCESSING). Two parameter sets, one file per set and subset, one
float64 row per GalaxyID of data/<subset>_ids.npy, in that order:

    data/pysex_params_gen2_<subset>.npy.gz   x, y, a, b, theta, petro_radius
    data/pysex_params_extra_<subset>.npy.gz  x, y, a, b, theta, flux_radius, kron_radius, petro_radius, fwhm

Each file has its record (records.write_record): the IDs and the image files it was measured from; a reader
refuses a file whose record does not match them. The original solution published files of exactly this format,
without records; dropped into data/, they are read as they are when data/<subset>_ids.npy lists the competition's
own images (KAGGLE_IDS), the images they were measured from.
"""
from dataclasses import dataclass

import numpy as np

import load_data
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import errors


@dataclass(frozen=True)
class ParamSet:
    """One parameter set: its name (in data/pysex_params_<name>_<subset>.npy.gz), the detection threshold it
    was measured at, in units of the background RMS, and its columns."""
    name: str
    detect_thresh: float
    columns: tuple


GEN2 = ParamSet("gen2", 2.0, ("x", "y", "a", "b", "theta", "petro_radius"))
EXTRA = ParamSet("extra", 10.0, ("x", "y", "a", "b", "theta", "flux_radius", "kron_radius", "petro_radius", "fwhm"))
PARAM_SETS = (GEN2, EXTRA)

# A recipe's PREPROCESSING -> (the parameter set it reads, whether it rescales as well as centres).
PREPROCESSING = {
    "centre": (GEN2, False),
    "centre_rescale": (GEN2, True),
    "centre_rescale_gen1": (EXTRA, True),
}


# records.ids_stamp of the competition's GalaxyIDs (61,578 training and 79,975 test images), for which the
# original's published parameter files were made.
KAGGLE_IDS = {"train": {"count": 61578, "digest": "3824c4465b49080d1338"},
              "test": {"count": 79975, "digest": "cb6dbd8f78ddf5b7248c"}}


def target_path(param_set, subset):
    """data/pysex_params_<set>_<subset>.npy.gz."""
    return paths.data_dir() / f"pysex_params_{param_set.name}_{subset}.npy.gz"


def all_paths():
    """Every file step 3 writes, for both subsets."""
    return [target_path(param_set, subset) for param_set in PARAM_SETS for subset in paths.SUBSETS]


def check_preprocessing(kind):
    """Refuse a PREPROCESSING value that names no parameter set (None is no preprocessing)."""
    if kind is not None and kind not in PREPROCESSING:
        raise ValueError(f"PREPROCESSING must be None or one of {sorted(PREPROCESSING)}, got {kind!r}")


def load_columns(param_set, subset, galaxy_ids):
    """The parameters of galaxy_ids (N,) of `subset`: {column name: (N,) float64}, rows aligned with galaxy_ids.
    Raises DataError when the file is missing, has the wrong shape, or lacks one of the IDs."""
    path = target_path(param_set, subset)
    if not path.exists():
        raise errors.DataError(f"{path}: missing; run extract_pysex_params.py (step 3) first")
    all_ids = load_data.load_ids(subset)
    check_made_for(path, subset, all_ids)
    params = records.load_gz(path)
    columns = param_set.columns
    if params.shape != (len(all_ids), len(columns)):
        raise errors.DataError(f"{path}: shape {params.shape}, expected ({len(all_ids)}, {len(columns)}) "
                                  f"(one row of {', '.join(columns)} per {subset} ID); run extract_pysex_params.py")
    galaxy_ids = np.asarray(galaxy_ids)
    rows = np.searchsorted(all_ids, galaxy_ids)
    missing = (rows >= len(all_ids)) | (all_ids[np.minimum(rows, len(all_ids) - 1)] != galaxy_ids)
    if missing.any():
        raise errors.DataError(f"GalaxyID {int(galaxy_ids[missing][0])} is not among the {subset} IDs "
                                  f"of {paths.ids_path(subset)}")
    return {name: params[rows, k].astype(np.float64) for k, name in enumerate(columns)}


def record_inputs(subset, galaxy_ids):
    """The inputs a parameter file's record lists: the IDs of its rows and the subset's image folder."""
    return dict(ids=records.ids_stamp(galaxy_ids), images=records.folder_stamp(paths.raw_images_dir(subset)))


def check_made_for(path, subset, galaxy_ids):
    """DataError unless the parameter file at path was measured from the images of galaxy_ids (N,), all the IDs of
    `subset`, as they are now (its record), or is the original's published file for the competition's images."""
    if not records.record_path(path).exists() and records.ids_stamp(galaxy_ids) == KAGGLE_IDS[subset]:
        return
    raw = paths.raw_images_dir(subset)
    now = record_inputs(subset, galaxy_ids)
    records.check_record(path, f"run extract_pysex_params.py (step 3) again (a file without a record is read, as "
                                 f"the original's published file, only for the competition's own {subset} images)",
                           ids=(now["ids"], f"{subset} IDs ({paths.ids_path(subset)})"),
                           images=(now["images"], f"images ({raw})"))
