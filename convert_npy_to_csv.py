"""Turn test-set predictions (.npy.gz, (N_test, 37) in test-ID order) into a gzipped submission CSV.

    python convert_npy_to_csv.py predictions/final/blended/blended_predictions_uniform.npy.gz
        -> predictions/final/blended/blended_predictions_uniform.csv.gz

The rows are labelled with data/test_ids.npy. Wrong shapes, NaN and values outside [0, 1] are refused
(naming the file, the row, its GalaxyID and the column) and no CSV is written.
"""
import argparse
import sys
from pathlib import Path

import load_data
import submission

NPY_SUFFIX = ".npy.gz"


def csv_path_for(npy_path):
    """PATH.npy.gz -> PATH.csv.gz"""
    npy_path = Path(npy_path)
    if not npy_path.name.endswith(NPY_SUFFIX):
        raise load_data.DataError(f"{npy_path}: expected a file name ending in {NPY_SUFFIX}")
    return npy_path.with_name(npy_path.name[:-len(NPY_SUFFIX)] + ".csv.gz")


def convert(npy_path):
    """Check the predictions in npy_path against the test IDs and write the CSV beside it; returns its path."""
    target = csv_path_for(npy_path)
    load_data.check_writable(target.parent)
    test_ids = load_data.load_ids("test")
    ids, predictions = submission.check_predictions(test_ids, load_data.load_gz(npy_path), npy_path)
    submission.write_submission(target, ids, predictions)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help="test-set predictions, PATH.npy.gz")
    return load_data.run_script(parser, lambda args: print(f"wrote {convert(args.predictions)}"), argv,
                                load_data.RERUN_NOTE)


if __name__ == "__main__":
    sys.exit(main())
