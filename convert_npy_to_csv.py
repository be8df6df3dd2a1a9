"""Turn test-set predictions (.npy.gz, (N_test, 37) in test-ID order) into a gzipped submission CSV.

    python convert_npy_to_csv.py predictions/final/blended/blended_predictions_uniform.npy.gz
        -> predictions/final/blended/blended_predictions_uniform.csv.gz

The rows are labelled with data/test_ids.npy. A file whose record (PATH.npy.gz.record.json) does not say it was made
for these IDs, from inputs unchanged since, is refused, as are wrong shapes, NaN and values outside [0, 1] (naming
the file, the row, its GalaxyID and the column); no CSV is written then. --without-record converts a file made
elsewhere, which has no record.
"""
import argparse
import sys
from pathlib import Path

import load_data
from galaxyzoo import submission
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors

NPY_SUFFIX = ".npy.gz"


def csv_path_for(npy_path):
    """PATH.npy.gz -> PATH.csv.gz"""
    npy_path = Path(npy_path)
    if not npy_path.name.endswith(NPY_SUFFIX):
        raise errors.DataError(f"{npy_path}: expected a file name ending in {NPY_SUFFIX}")
    return npy_path.with_name(npy_path.name[:-len(NPY_SUFFIX)] + ".csv.gz")


def convert(npy_path, without_record=False):
    """Check the predictions in npy_path against the test IDs (its record, then its values) and write the CSV beside
    it; returns its path. without_record: a file without a record is taken to be in test-ID order."""
    target = csv_path_for(npy_path)
    files.check_writable(target.parent)
    test_ids = load_data.load_ids("test")
    ids, predictions = submission.load_recorded(
        npy_path, test_ids, "test IDs (data/test_ids.npy)",
        "run the step that made it again (blend_predictions.py, predict_augmented_npy.py); a file made elsewhere, "
        "without a record, is converted with --without-record", without_record)
    submission.write_submission(target, ids, predictions)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help="test-set predictions, PATH.npy.gz")
    parser.add_argument("--without-record", action="store_true",
                        help="convert a file that has no record (made elsewhere), taking its rows to be the test IDs "
                             "of data/test_ids.npy in order")
    return runner.run_script(parser, lambda args: print(f"wrote {convert(args.predictions, args.without_record)}"),
                                argv, runner.RERUN_NOTE)


if __name__ == "__main__":
    sys.exit(main())
