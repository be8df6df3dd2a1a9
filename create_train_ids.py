"""Write the sorted GalaxyID lists of the training and test images.

    python create_train_ids.py [--root ROOT]

Reads the file names of data/raw/images_train_rev1/ and data/raw/images_test_rev1/ (each `<GalaxyID>.jpg`)
and writes data/train_ids.npy and data/test_ids.npy: int64 (N,), ascending. Every other script takes
its image order from these files.
"""
import sys

import numpy as np

import load_data
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors


def image_ids(folder):
    """The GalaxyIDs of the `<GalaxyID>.jpg` files in `folder`, int64 (N,) ascending.
    Raises DataError for a missing or empty folder or any other entry in it."""
    if not folder.is_dir():
        raise paths.missing_image_folder(folder)
    ids = [_id_of(entry) for entry in sorted(folder.iterdir())]
    if not ids:
        raise errors.DataError(f"{folder}: no images in the folder")
    return np.sort(np.array(ids, dtype=np.int64))


def _id_of(entry):
    """The GalaxyID named by one folder entry `<GalaxyID>.jpg`, written the way load_data spells it."""
    stem = entry.name[:-len(".jpg")] if entry.name.endswith(".jpg") else None
    if not entry.is_file() or stem is None or not stem.isdigit() or str(int(stem)) != stem:
        raise errors.DataError(f"{entry}: not an image named <GalaxyID>.jpg (GalaxyID a plain integer); "
                                  f"remove it from the folder")
    return int(stem)


def check_disjoint(ids):
    """DataError naming the GalaxyIDs that are in both image folders (ids: {subset: IDs}): a galaxy cannot be both
    a training and a test image."""
    shared = np.intersect1d(ids["train"], ids["test"])
    if len(shared):
        folders = " and ".join(str(paths.raw_images_dir(subset)) for subset in paths.SUBSETS)
        shown = ", ".join(str(galaxy_id) for galaxy_id in shared[:10]) + (", ..." if len(shared) > 10 else "")
        raise errors.DataError(f"{folders}: {len(shared)} GalaxyID(s) in both folders ({shown}); remove each "
                                  f"from one of them; nothing was written")


def write_ids():
    """Read both image folders, then write both ID files (nothing is written when either folder is bad or they
    share a GalaxyID) and say what was written."""
    files.check_writable(paths.data_dir())
    ids = {subset: image_ids(paths.raw_images_dir(subset)) for subset in paths.SUBSETS}
    check_disjoint(ids)
    for subset, subset_ids in ids.items():
        path = paths.ids_path(subset)
        records.save_npy(path, subset_ids)
        print(f"{subset}: {len(subset_ids)} GalaxyIDs -> {path}")
    load_data.forget_cached()


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    return runner.run_root_only_script(__doc__, write_ids, argv)


if __name__ == "__main__":
    sys.exit(main())
