"""Kaggle submission files: `GalaxyID,Class1.1,...,Class11.6`, one row per galaxy, IDs ascending.

    write_submission(path, galaxy_ids (N,), predictions (N, 37))   validated, atomic, gzipped when path ends in .gz
    read_submission(path) -> (ids int64 (N,), predictions float64 (N, 37))

Values are printed as '%.6f' (like Kaggle's own files, at most 5e-7 from the array; negligible for the RMSE).
"""
import functools
import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyzoo import decision_tree
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import errors

VALUE_FORMAT = "%.6f"
PRINTED_PRECISION = 5e-7  # the largest difference between a value and its printed form
# Averages and blends of values in [0, 1] can land a rounding error outside it; such values are accepted
# and clipped when written. Anything further out is an error.
RANGE_TOLERANCE = 1e-6


def rmse(predictions, labels):
    """The competition's score: the RMSE over every output of every galaxy, computed in float64."""
    return float(np.sqrt(np.mean((np.asarray(predictions, np.float64) - np.asarray(labels, np.float64)) ** 2)))


def worse_than_mean(name, score, mean_score, what="validation RMSE"):
    """The warning line when `score` (an RMSE of `name`) is worse than `mean_score`, that of predicting the training
    mean for every image; None otherwise."""
    if score <= mean_score:
        return None
    return f"WARNING: {name}: {what} {score:.6f} is worse than predicting the training mean ({mean_score:.6f})"


def check_predictions(galaxy_ids, predictions, source):
    """Raise DataError (naming `source`, the row, GalaxyID and column) unless predictions is (N, 37),
    finite and within [0, 1] (up to RANGE_TOLERANCE) and galaxy_ids is (N,), ascending and unique.
    Returns (ids int64 (N,), predictions float64 (N, 37) clipped to [0, 1])."""
    ids, given = np.asarray(galaxy_ids), np.asarray(predictions)
    if not (np.issubdtype(given.dtype, np.number) or given.dtype == bool):
        raise errors.DataError(f"{source}: predictions must be numbers, got an array of {given.dtype}")
    values = given.astype(np.float64)
    expected = (len(ids), decision_tree.NUM_OUTPUTS)
    if ids.ndim != 1 or values.shape != expected:
        raise errors.DataError(f"{source}: predictions have shape {values.shape}, expected {expected} "
                                  f"(one row per GalaxyID, one column per answer)")
    if not np.issubdtype(ids.dtype, np.integer):
        raise errors.DataError(f"{source}: GalaxyIDs must be integers, got dtype {ids.dtype}")
    not_increasing = np.nonzero(np.diff(ids) <= 0)[0]
    if len(not_increasing):
        row = int(not_increasing[0]) + 1
        raise errors.DataError(f"{source}: row {row} (GalaxyID {int(ids[row])}): GalaxyIDs must be ascending "
                                  f"and unique (previous is {int(ids[row - 1])})")
    bad = ~np.isfinite(values) | (values < -RANGE_TOLERANCE) | (values > 1 + RANGE_TOLERANCE)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise errors.DataError(f"{source}: row {row} (GalaxyID {int(ids[row])}), column "
                                  f"{decision_tree.COLUMNS[column]}: value {float(values[row, column])} is not a "
                                  f"number within [0, 1] ({int(bad.sum())} bad values in all)")
    return ids.astype(np.int64), np.clip(values, 0.0, 1.0) + 0.0  # + 0.0 turns -0.0 into 0.0


def load_recorded(path, galaxy_ids, what, rerun, without_record=False):
    """The predictions of a .npy.gz file for galaxy_ids (N,) (`what` says which IDs they are): its record must say
    that its rows are these IDs and that what it was made from (a model's checkpoint, the prediction files of a
    blend) is unchanged (records.check_record), then check_predictions; DataError ending with `rerun` otherwise.
    without_record: a file that has no record is taken as it is. Returns (ids, predictions) as check_predictions."""
    path = Path(path)
    if not path.exists():
        raise errors.DataError(f"{path}: file missing")
    if not (without_record and not records.record_path(path).exists()):
        records.check_record(path, rerun, ids=(records.ids_stamp(galaxy_ids), what))
    return check_predictions(galaxy_ids, records.load_gz(path), path)


def write_submission(path, galaxy_ids, predictions):
    """Write a submission CSV (gzipped when path ends in .gz) atomically after check_predictions;
    raises DataError on bad input, leaving no file."""
    path = Path(path)
    ids, values = check_predictions(galaxy_ids, predictions, path)
    with files.atomic_path(path) as tmp:
        opener = functools.partial(gzip.open, compresslevel=4) if path.name.endswith(".gz") else open
        with opener(tmp, "wt", newline="") as f:
            np.savetxt(f, np.column_stack([ids, values]), fmt=["%d"] + [VALUE_FORMAT] * decision_tree.NUM_OUTPUTS,
                       delimiter=",", header=",".join(decision_tree.CSV_HEADER), comments="")


def read_submission(path):
    """Read a submission CSV (gzipped when path ends in .gz): (ids int64 (N,), predictions float64 (N, 37)).
    Raises DataError naming the file (and row, GalaxyID, column) when the header is not exactly
    decision_tree.CSV_HEADER or a field is missing or not a number."""
    path = Path(path)
    if not path.exists():
        raise errors.DataError(f"{path}: file missing")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False,
                            compression="gzip" if path.name.endswith(".gz") else None)
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as exc:
        raise errors.DataError(f"{path}: cannot read as CSV: {exc}") from None
    header = tuple(table.columns)
    if header != decision_tree.CSV_HEADER:
        differing = next((i for i, (a, b) in enumerate(zip(header, decision_tree.CSV_HEADER)) if a != b),
                         min(len(header), len(decision_tree.CSV_HEADER)))
        raise errors.DataError(f"{path}: header differs from GalaxyID,Class1.1,...,Class11.6 at field "
                                  f"{differing + 1} ({len(header)} fields, expected {len(decision_tree.CSV_HEADER)})")
    ids = pd.to_numeric(table["GalaxyID"], errors="coerce").to_numpy(np.float64)
    values = table[list(decision_tree.COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad_id = ~np.isfinite(ids) | (ids != np.round(ids))
    if bad_id.any():
        row = int(np.argmax(bad_id))
        raise errors.DataError(f"{path}: row {row + 1}: GalaxyID {table['GalaxyID'].iloc[row]!r} is not an integer")
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise errors.DataError(f"{path}: row {row + 1} (GalaxyID {int(ids[row])}), column "
                                  f"{decision_tree.COLUMNS[column]}: {table.iloc[row, column + 1]!r} is not a number")
    return ids.astype(np.int64), values
