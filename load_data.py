"""The data layer: GalaxyIDs, labels, the train/valid split, and images, read from the layout under the project root
(galaxyzoo/paths.py: data/raw/..., data/train_ids.npy, data/solutions_train.npy, ...).

Images are read from the RAM copy made by `copy_data_to_shm.py` when it exists, else from data/raw. When that script
also built a decoded uint8 cache, `load_image` reads from it instead of decoding JPEGs. Functions that read images take
the Layout to read from (galaxyzoo.paths.Layout; default: the current root's), so that work done in other processes
names its root explicitly.
"""
import collections
import io
import os
import time

import numpy as np
import simplejpeg
from PIL import Image

from galaxyzoo import paths, records
from galaxyzoo.errors import DataError

IMAGE_SIZE = 424
JPEG_START = b"\xff\xd8\xff"  # start-of-image marker and the next marker's lead byte
JPEG_END = b"\xff\xd9"  # end-of-image marker; never inside the compressed data, where 0xff is followed by 0 or 0xd0-0xd7
HEADER_BYTES = 4096  # a JPEG's frame header (its size) lies in its first few hundred bytes unless metadata precedes it
TAIL_BYTES = 64  # where the end-of-image marker of a whole file is looked for (some encoders pad after it)
REPLACE_ADVICE = "replace the file, or remove the image (and its label row) and run the steps from create_train_ids.py"
SPLITS = ("valid", "test")  # what predictions are made for: the held-out labelled images, and the test images
SPLIT_SUBSET = {"valid": "train", "test": "test"}  # the image folder (paths.SUBSETS) each split's images lie in
SPLIT_IDS_TEXT = {"valid": "validation IDs (the last 10% of data/train_ids.npy)", "test": "test IDs (data/test_ids.npy)"}


def forget_cached():
    """Drop the IDs, open decoded caches and folder checks made so far, so that files written since are read afresh
    (also whenever the root is set)."""
    _cached_ids.clear()
    _open_caches.clear()
    _checked.clear()
    records.forget_folder_stamps()


paths.on_root_change(forget_cached)


# ---------------------------------------------------------------------------------------------------
# IDs and labels

_cached_ids = {}  # data/<subset>_ids.npy path -> its IDs
_checked = {}  # checks made once per process (the RAM copy against data/raw)


def load_ids(subset, layout=None):
    """Sorted GalaxyIDs of a subset, from data/<subset>_ids.npy (written by create_train_ids.py). Refused when the
    subset's image folder is there and holds other images than the file lists (the folder is the file's one input;
    without it, the IDs are taken as they are: blending and the submission need no images)."""
    layout = layout or paths.current()
    path = layout.ids_path(subset)
    if path not in _cached_ids:
        if not path.exists():
            raise DataError(f"{path}: missing; run create_train_ids.py first")
        ids = np.load(path)
        _check_ids_match_folder(path, ids, layout.raw_images_dir(subset))
        _cached_ids[path] = ids
    return _cached_ids[path]


def _check_ids_match_folder(path, ids, folder):
    """DataError when `folder` exists and its <GalaxyID>.jpg files are not exactly `ids`."""
    if not folder.is_dir():
        return
    on_disk = np.array(sorted(int(name[:-4]) for name in _jpg_names(folder) if name[:-4].isdigit()), dtype=np.int64)
    if np.array_equal(on_disk, ids):
        return
    gone, new = np.setdiff1d(ids, on_disk), np.setdiff1d(on_disk, ids)
    problems = ([f"image file missing for {len(gone)} listed GalaxyID(s) (first: GalaxyID {gone[0]}, "
                 f"{folder / f'{gone[0]}.jpg'})"]
                if len(gone) else []) + \
               ([f"{len(new)} image(s) not listed (first: {folder / f'{new[0]}.jpg'})"] if len(new) else [])
    raise DataError(f"{path}: lists {len(ids)} GalaxyIDs, but {folder} has changed since it was written: "
                    f"{'; '.join(problems) or 'the order differs'}; restore the images, or run create_train_ids.py "
                    f"and the steps after it")


def _jpg_names(folder):
    with os.scandir(folder) as entries:
        return [entry.name for entry in entries if entry.name.endswith(".jpg")]


def load_solutions():
    """Training labels (N, 37) float32 in train-ID order, from data/solutions_train.npy; refused unless its record
    says it was made from the current data/train_ids.npy and, when it is there, the current label CSV."""
    path = paths.solutions_train_path()
    if not path.exists():
        raise DataError(f"{path}: missing; run create_solutions_train.py first")
    csv = paths.solutions_csv_path()
    records.check_record(path, "run create_solutions_train.py again",
                         train_ids=(records.ids_stamp(load_ids("train")), f"training IDs ({paths.ids_path('train')})"),
                         labels_csv=(records.file_stamp(csv) if csv.exists() else None, f"label file ({csv})"))
    return np.load(path).astype(np.float32)


def train_valid_split(num_train):
    """The original split: the last 10% of the (sorted) training IDs validate, the rest train.
    Returns (train_indices, valid_indices)."""
    num_valid = num_train // 10
    return np.arange(num_train - num_valid), np.arange(num_train - num_valid, num_train)


LabelledSplit = collections.namedtuple("LabelledSplit", ["train_ids", "train_labels", "valid_ids", "valid_labels"])


def labelled_split():
    """The labelled training set cut by train_valid_split: LabelledSplit of IDs (n,) and labels (n, 37) float32
    for the images that train and for those that validate. Raises DataError when data/solutions_train.npy does
    not have one row per ID of data/train_ids.npy."""
    ids, labels = load_ids("train"), load_solutions()
    if len(labels) != len(ids):
        raise DataError(f"{paths.solutions_train_path()}: {len(labels)} label rows but {len(ids)} IDs in "
                        f"{paths.ids_path('train')}; run create_solutions_train.py again")
    train_idx, valid_idx = train_valid_split(len(ids))
    return LabelledSplit(ids[train_idx], labels[train_idx], ids[valid_idx], labels[valid_idx])


def split_ids(split):
    """The GalaxyIDs predictions of `split` are made for: "valid", the held-out labelled images (labelled_split), or
    "test", the test images."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return labelled_split().valid_ids if split == "valid" else load_ids("test")


# ---------------------------------------------------------------------------------------------------
# Images


def image_path(galaxy_id, subset="train", folders=None, layout=None):
    """The JPEG of one galaxy: the RAM copy when present, else data/raw. folders: image_folders(subset), found once
    by a caller that asks for many images."""
    in_ram, raw = image_folders(subset, layout) if folders is None else folders
    name = f"{int(galaxy_id)}.jpg"
    return in_ram / name if in_ram is not None and (in_ram / name).exists() else raw / name


def image_folders(subset, layout=None):
    """(the subset's folder in the RAM copy, or None when there is none; its folder in data/raw). A RAM copy is
    refused unless its files have the names, sizes and modification times of those in data/raw (copy_data_to_shm.py
    keeps them), so that a copy left from other or older images, or one cut short, is never read."""
    layout = layout or paths.current()
    in_ram, raw = layout.ram_images_dir(subset), layout.raw_images_dir(subset)
    if not in_ram.is_dir():
        return None, raw
    key = ("ram copy", str(in_ram))
    if key not in _checked:
        copy, original = records.folder_stamp(in_ram), records.folder_stamp(raw)
        if original is not None and copy != original:
            raise DataError(f"{in_ram}: this RAM copy of {raw} differs from it ({copy['count']} images there, "
                            f"{original['count']} in data/raw, or files changed since the copy); run "
                            f"copy_data_to_shm.py again (it copies only what differs) or delete {layout.ram_dir()}")
        _checked[key] = True
    return in_ram, raw


def _who(path, galaxy_id):
    return f"{path}" + (f" (GalaxyID {galaxy_id})" if galaxy_id is not None else "")


def _read(path, galaxy_id, read):
    """read(open binary file) for the image file at path; DataError naming the file and ID when it cannot be read."""
    try:
        with open(path, "rb") as file:
            return read(file)
    except FileNotFoundError:
        raise DataError(f"{_who(path, galaxy_id)}: image file missing") from None
    except OSError as exc:
        raise DataError(f"{_who(path, galaxy_id)}: cannot read image: {exc}") from None


def _check_jpeg_header(data, path, galaxy_id, whole=True):
    """DataError unless data (the file, or its first bytes when not `whole`) starts a JPEG whose header says
    424x424. Nothing is decoded: a huge image is refused before its pixels are allocated."""
    who = _who(path, galaxy_id)
    if not data.startswith(JPEG_START):
        raise DataError(f"{who}: not a JPEG file (found {_image_format(data)}); {REPLACE_ADVICE}")
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
    except ValueError as exc:
        if not whole:  # the header may lie beyond the first bytes
            return _check_jpeg_header(_read(path, galaxy_id, lambda file: file.read()), path, galaxy_id)
        raise DataError(f"{who}: cannot read the JPEG header: {exc}; {REPLACE_ADVICE}") from None
    if (height, width) != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{who}: image is {width}x{height}, expected {IMAGE_SIZE}x{IMAGE_SIZE}; {REPLACE_ADVICE}")


def check_image_file(path, galaxy_id=None):
    """Check one image file without decoding it (about 20 µs when the file is in the page cache): a JPEG whose header
    says 424x424 and which ends with the end-of-image marker, which a file cut short lacks. Damage inside the
    compressed data is found only when the image is decoded. DataError naming the file, the ID and what to do."""
    def head_and_tail(file):
        head = file.read(HEADER_BYTES)
        file.seek(max(file.seek(0, os.SEEK_END) - TAIL_BYTES, 0))
        return head, file.read()

    head, tail = _read(path, galaxy_id, head_and_tail)
    _check_jpeg_header(head, path, galaxy_id, whole=len(head) < HEADER_BYTES)
    if JPEG_END not in tail:
        raise DataError(f"{_who(path, galaxy_id)}: image file is cut short (no end-of-image marker); {REPLACE_ADVICE}")


def check_images(galaxy_ids, subset):
    """check_image_file for every image of galaxy_ids that would be decoded from its JPEG (those in the decoded
    cache are read from it instead, checked when it was built); DataError for the first bad one in ID order. Returns
    how many were checked."""
    cache = _cache_for(subset)
    ids = [int(g) for g in galaxy_ids if cache is None or int(g) not in cache.index]
    folders = image_folders(subset)
    for galaxy_id in ids:
        check_image_file(image_path(galaxy_id, subset, folders), galaxy_id)
    return len(ids)


def check_images_read(subsets):
    """check_images for the images a run will decode, subsets [(subset, galaxy_ids), ...], before its work, so that a
    broken image stops it at the start and not when first drawn. Returns a line saying what was checked."""
    start = time.time()
    count = sum(check_images(ids, subset) for subset, ids in subsets)
    cached = sum(len(ids) for _, ids in subsets) - count
    from_cache = f"{cached} images read from the decoded cache (checked when it was built)" if cached else ""
    if count == 0:
        return from_cache or "no images to check"
    return (f"{count} image files checked (JPEG, 424x424 in its header, not cut short) in {time.time() - start:.1f} s"
            + (f"; {from_cache}" if cached else ""))


def decode_jpeg(path, galaxy_id=None):
    """Decode one image file to uint8 (424, 424, 3), or raise DataError naming the file and ID.
    libjpeg-turbo through simplejpeg: the same pixels as PIL's decoder, without its per-image overhead."""
    data = _read(path, galaxy_id, lambda file: file.read())
    _check_jpeg_header(data, path, galaxy_id)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError as exc:
        raise DataError(f"{_who(path, galaxy_id)}: cannot decode image: {exc}; {REPLACE_ADVICE}") from None


def _image_format(data):
    """The format PIL recognises in `data` (e.g. 'PNG'), or 'unknown data', for error messages."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except (OSError, SyntaxError, ValueError):
        return "unknown data"


class ImageCache:
    """The decoded uint8 cache of one subset, memory-mapped: `cache[i]` is image i in ID order."""

    def __init__(self, subset, layout=None):
        layout = layout or paths.current()
        self.path = layout.cache_path(subset)
        self.images = np.load(self.path, mmap_mode="r")
        ids = load_ids(subset, layout)
        if self.images.shape != (len(ids), IMAGE_SIZE, IMAGE_SIZE, 3):
            raise DataError(f"{self.path}: cache shape {self.images.shape} does not match "
                            f"{len(ids)} {subset} IDs; rebuild it with copy_data_to_shm.py --cache")
        raw = layout.raw_images_dir(subset)
        records.check_record(self.path, "rebuild it with copy_data_to_shm.py --cache",
                             ids=(records.ids_stamp(ids), f"{subset} IDs ({layout.ids_path(subset)})"),
                             images=(records.folder_stamp(raw), f"images ({raw})"))
        self.index = {int(g): i for i, g in enumerate(ids)}

    def __getitem__(self, galaxy_id):
        return np.asarray(self.images[self.index[int(galaxy_id)]])


_open_caches = {}


def _cache_for(subset, layout=None):
    """The open cache of a subset, or None when it was not built."""
    layout = layout or paths.current()
    path = layout.cache_path(subset)
    if path not in _open_caches:
        _open_caches[path] = ImageCache(subset, layout) if path.exists() else None
    return _open_caches[path]


def load_image_uint8(galaxy_id, subset="train", layout=None):
    """One galaxy as uint8 (424, 424, 3): from the decoded cache when built, else from its JPEG. layout: the root's
    Layout to read from (default: the current root's)."""
    cache = _cache_for(subset, layout)
    if cache is not None and int(galaxy_id) in cache.index:
        return cache[galaxy_id]
    return decode_jpeg(image_path(galaxy_id, subset, layout=layout), galaxy_id)


def load_image(galaxy_id, subset="train", layout=None):
    """One galaxy as float32 RGB in [0, 1], shape (424, 424, 3)."""
    return load_image_uint8(galaxy_id, subset, layout).astype(np.float32) / 255.0
