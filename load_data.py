"""Where the data lives and how to read it.

Layout under the project root (the folder of this file, or another one chosen with `--root` or the
GALAXY_ROOT environment variable, so that tests and the demo never touch a user's real data):

    data/raw/training_solutions_rev1.csv
    data/raw/images_train_rev1/<GalaxyID>.jpg
    data/raw/images_test_rev1/<GalaxyID>.jpg
    data/train_ids.npy, data/test_ids.npy, data/solutions_train.npy     (written by the create_* scripts)
    predictions/, analysis/                                              (written by training and prediction)

Images are read from the RAM copy made by `copy_data_to_shm.py` when it exists, else from data/raw.
When that script also built a decoded uint8 cache, `load_image` reads from it instead of decoding JPEGs.
"""
import argparse
import collections
import contextlib
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

IMAGE_SIZE = 424
SUBSETS = ("train", "test")
RAW_IMAGE_FOLDERS = {"train": "images_train_rev1", "test": "images_test_rev1"}
SOLUTIONS_CSV = "training_solutions_rev1.csv"
JPEG_START = b"\xff\xd8\xff"  # start-of-image marker and the next marker's lead byte
JPEG_END = b"\xff\xd9"  # end-of-image marker; never inside the compressed data, where 0xff is followed by 0 or 0xd0-0xd7
HEADER_BYTES = 4096  # a JPEG's frame header (its size) lies in its first few hundred bytes unless metadata precedes it
TAIL_BYTES = 64  # where the end-of-image marker of a whole file is looked for (some encoders pad after it)
REPLACE_ADVICE = "replace the file, or remove the image (and its label row) and run the steps from create_train_ids.py"

_root_override = None


def _umask():
    """The process umask (read once, at import, since reading it means setting it briefly)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_NEW_FILE_MODE = 0o666 & ~_umask()  # the permissions an ordinary new file gets


class DataError(Exception):
    """Bad or missing input data; the message names the file, the ID and what is wrong."""


# ---------------------------------------------------------------------------------------------------
# Paths


def root():
    """The project root under which data/, predictions/ and analysis/ live."""
    if _root_override is not None:
        return _root_override
    env = os.environ.get("GALAXY_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent


def set_root(path):
    """Use `path` as the project root for this process (None: back to the default)."""
    global _root_override
    _root_override = None if path is None else Path(path).resolve()
    forget_cached()


def forget_cached():
    """Drop the IDs, open decoded caches and folder checks made so far, so that files written since are read afresh."""
    _cached_ids.clear()
    _open_caches.clear()
    _checked.clear()
    _folder_stamps.clear()


def add_root_argument(parser):
    """Add the `--root` option that every script shares."""
    parser.add_argument("--root", default=None,
                        help="project root holding data/, predictions/, analysis/ "
                             "(default: $GALAXY_ROOT or the folder of the scripts)")


def apply_root_argument(args):
    if args.root is not None:
        set_root(args.root)


def check_root():
    """DataError when the project root does not exist (a mistyped --root or $GALAXY_ROOT): a run that reads its
    input there is refused before it makes any folder or lock."""
    if not root().is_dir():
        raise DataError(f"{root()}: the project root (--root or $GALAXY_ROOT) does not exist; nothing was written")


def data_dir():
    return root() / "data"


def raw_dir():
    return data_dir() / "raw"


def raw_images_dir(subset):
    _check_subset(subset)
    return raw_dir() / RAW_IMAGE_FOLDERS[subset]


def solutions_csv_path():
    return raw_dir() / SOLUTIONS_CSV


def ids_path(subset):
    _check_subset(subset)
    return data_dir() / f"{subset}_ids.npy"


def solutions_train_path():
    return data_dir() / "solutions_train.npy"


def predictions_dir():
    return root() / "predictions" / "final"


def augmented_predictions_dir(split):
    """predictions/final/augmented/<split>: test-time-averaged predictions (split: 'valid' or 'test')."""
    return predictions_dir() / "augmented" / split


def augmented_predictions_path(model_name, split):
    """predictions/final/augmented/<split>/<model_name>.npy.gz: one model's test-time-averaged predictions."""
    return augmented_predictions_dir(split) / f"{model_name}.npy.gz"


def model_name_argument(text):
    """A model name as a user types it: the try_*.py script's name, with or without its .py."""
    return text.removesuffix(".py")


def synthetic_test_solutions_path():
    """data/raw/synthetic_test_solutions.csv: the synthetic dataset's test labels, read only when scoring."""
    return raw_dir() / "synthetic_test_solutions.csv"


def analysis_dir():
    return root() / "analysis" / "final"


def ram_dir():
    """Where `copy_data_to_shm.py` puts the RAM copy: $GALAXY_RAM_DIR, or a folder in /dev/shm named
    after the project root, so two roots never share a copy."""
    env = os.environ.get("GALAXY_RAM_DIR")
    if env:
        return Path(env)
    tag = hashlib.sha1(str(root()).encode()).hexdigest()[:10]
    return Path("/dev/shm") / f"galaxy-zoo-{tag}"


def ram_images_dir(subset):
    _check_subset(subset)
    return ram_dir() / RAW_IMAGE_FOLDERS[subset]


def cache_path(subset):
    """The decoded uint8 cache of one subset: an (N, 424, 424, 3) .npy in ID order."""
    _check_subset(subset)
    return ram_dir() / f"{RAW_IMAGE_FOLDERS[subset]}_uint8.npy"


def image_path(galaxy_id, subset="train", folders=None):
    """The JPEG of one galaxy: the RAM copy when present, else data/raw. folders: image_folders(subset), found once
    by a caller that asks for many images."""
    in_ram, raw = image_folders(subset) if folders is None else folders
    name = f"{int(galaxy_id)}.jpg"
    return in_ram / name if in_ram is not None and (in_ram / name).exists() else raw / name


def image_folders(subset):
    """(the subset's folder in the RAM copy, or None when there is none; its folder in data/raw). A RAM copy is
    refused unless its files have the names, sizes and modification times of those in data/raw (copy_data_to_shm.py
    keeps them), so that a copy left from other or older images, or one cut short, is never read."""
    in_ram, raw = ram_images_dir(subset), raw_images_dir(subset)
    if not in_ram.is_dir():
        return None, raw
    key = ("ram copy", str(in_ram))
    if key not in _checked:
        copy, original = folder_stamp(in_ram), folder_stamp(raw)
        if original is not None and copy != original:
            raise DataError(f"{in_ram}: this RAM copy of {raw} differs from it ({copy['count']} images there, "
                            f"{original['count']} in data/raw, or files changed since the copy); run "
                            f"copy_data_to_shm.py again (it copies only what differs) or delete {ram_dir()}")
        _checked[key] = True
    return in_ram, raw


KAGGLE_TRAIN_FOLDER = "images_training_rev1"  # a name the training images are often unpacked under


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
    return Path(env) if env else Path(__file__).resolve().parent.parent / "shared" / "real_sample"


def _check_subset(subset):
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")


# ---------------------------------------------------------------------------------------------------
# IDs and labels

_cached_ids = {}
_checked = {}  # checks made once per process (the RAM copy against data/raw)


def load_ids(subset):
    """Sorted GalaxyIDs of a subset, from data/<subset>_ids.npy (written by create_train_ids.py). Refused when the
    subset's image folder is there and holds other images than the file lists (the folder is the file's one input;
    without it, the IDs are taken as they are: blending and the submission need no images)."""
    _check_subset(subset)
    if subset not in _cached_ids:
        path = ids_path(subset)
        if not path.exists():
            raise DataError(f"{path}: missing; run create_train_ids.py first")
        ids = np.load(path)
        _check_ids_match_folder(path, ids, raw_images_dir(subset))
        _cached_ids[subset] = ids
    return _cached_ids[subset]


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
    path = solutions_train_path()
    if not path.exists():
        raise DataError(f"{path}: missing; run create_solutions_train.py first")
    csv = solutions_csv_path()
    check_record(path, "run create_solutions_train.py again",
                 train_ids=(ids_stamp(load_ids("train")), f"training IDs ({ids_path('train')})"),
                 labels_csv=(file_stamp(csv) if csv.exists() else None, f"label file ({csv})"))
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
        raise DataError(f"{solutions_train_path()}: {len(labels)} label rows but {len(ids)} IDs in "
                        f"{ids_path('train')}; run create_solutions_train.py again")
    train_idx, valid_idx = train_valid_split(len(ids))
    return LabelledSplit(ids[train_idx], labels[train_idx], ids[valid_idx], labels[valid_idx])


# ---------------------------------------------------------------------------------------------------
# Images


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

    def __init__(self, subset):
        self.path = cache_path(subset)
        self.images = np.load(self.path, mmap_mode="r")
        ids = load_ids(subset)
        if self.images.shape != (len(ids), IMAGE_SIZE, IMAGE_SIZE, 3):
            raise DataError(f"{self.path}: cache shape {self.images.shape} does not match "
                            f"{len(ids)} {subset} IDs; rebuild it with copy_data_to_shm.py --cache")
        raw = raw_images_dir(subset)
        check_record(self.path, "rebuild it with copy_data_to_shm.py --cache",
                     ids=(ids_stamp(ids), f"{subset} IDs ({ids_path(subset)})"),
                     images=(folder_stamp(raw), f"images ({raw})"))
        self.index = {int(g): i for i, g in enumerate(ids)}

    def __getitem__(self, galaxy_id):
        return np.asarray(self.images[self.index[int(galaxy_id)]])


_open_caches = {}


def _cache_for(subset):
    """The open cache of a subset, or None when it was not built."""
    key = (str(ram_dir()), subset)
    if key not in _open_caches:
        _open_caches[key] = ImageCache(subset) if cache_path(subset).exists() else None
    return _open_caches[key]


def load_image_uint8(galaxy_id, subset="train"):
    """One galaxy as uint8 (424, 424, 3): from the decoded cache when built, else from its JPEG."""
    cache = _cache_for(subset)
    if cache is not None and int(galaxy_id) in cache.index:
        return cache[galaxy_id]
    return decode_jpeg(image_path(galaxy_id, subset), galaxy_id)


def load_image(galaxy_id, subset="train"):
    """One galaxy as float32 RGB in [0, 1], shape (424, 424, 3)."""
    return load_image_uint8(galaxy_id, subset).astype(np.float32) / 255.0


# ---------------------------------------------------------------------------------------------------
# Records: what a derived file was made from
#
# Every derived file but the ID lists (which are checked against their image folder directly) has a record beside it,
# <file>.record.json: the step that wrote it, a stamp of the file itself (its size and content digest; size and
# modification time for the decoded caches, tens of GB, which never move) and stamps of its inputs (the IDs of its
# rows, the files and folders it was computed from). Readers compare the stamps with the inputs as they are now and
# refuse a stale file with the step to rerun. An input that is gone is not compared: it cannot contradict the file.

RECORD_SUFFIX = ".record.json"


def record_path(path):
    """<path>.record.json, beside path."""
    path = Path(path)
    return path.with_name(path.name + RECORD_SUFFIX)


def _digest(data):
    return hashlib.sha256(data).hexdigest()[:20]


def ids_stamp(galaxy_ids):
    """The stamp of a list of GalaxyIDs: their count and a digest of them in order."""
    ids = np.ascontiguousarray(np.asarray(galaxy_ids, dtype=np.int64))
    return {"count": int(len(ids)), "digest": _digest(ids.tobytes())}


def file_stamp(path, content=True):
    """The stamp of a file: its size and a digest of its content (about 0.7 s per GB), or, when not `content`, its
    size and modification time (for the decoded caches: tens of GB, never moved)."""
    stat = os.stat(path)
    if not content:
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return {"size": stat.st_size, "digest": digest.hexdigest()[:20]}


_folder_stamps = {}


def folder_stamp(folder):
    """The stamp of an image folder: how many .jpg files it holds and a digest of their names, sizes and modification
    times (a stat per file: about 0.1 s per 10,000 files); None when the folder is missing. Made once per process."""
    folder = Path(folder)
    if str(folder) not in _folder_stamps:
        if not folder.is_dir():
            return None
        with os.scandir(folder) as entries:
            files = sorted((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns) for entry in entries
                           if entry.name.endswith(".jpg"))
        _folder_stamps[str(folder)] = {"count": len(files),
                                       "digest": _digest("\n".join(f"{n} {s} {t}" for n, s, t in files).encode())}
    return _folder_stamps[str(folder)]


def write_record(path, made_by, by_content=True, **inputs):
    """Write the record of the finished file `path`: made_by (the step), its stamp (file_stamp, by content or not),
    and the stamps of its inputs."""
    record = {"made_by": made_by, "file": file_stamp(path, by_content), "inputs": inputs}
    with atomic_path(record_path(path)) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def read_record(path, rerun):
    """The record of `path` after checking that it describes the file as it is; DataError ending with `rerun`
    (what to do) when it is missing, unreadable, or describes another version of the file."""
    record_file = record_path(path)
    if not record_file.exists():
        raise DataError(f"{path}: no record of what it was made from ({record_file.name} is missing: the file was "
                        f"made by hand, by an older version, or copied without it); {rerun}")
    try:
        record = json.loads(record_file.read_text())
        file, inputs = record["file"], record["inputs"]
        if not (isinstance(file, dict) and isinstance(inputs, dict)
                and all(isinstance(f.get("path"), str) for value in inputs.values() for f in _file_inputs(value))):
            raise ValueError("not the layout write_record writes")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{record_file}: unreadable record ({exc}); {rerun}") from None
    if file != file_stamp(path, content="digest" in file):
        raise DataError(f"{path}: not the file its record {record_file.name} describes (changed or replaced since "
                        f"it was written); {rerun}")
    return record


def _described(stamp):
    if isinstance(stamp, dict) and "count" in stamp:
        return f"{stamp['count']} of them, digest {stamp['digest'][:8]}"
    if isinstance(stamp, dict) and "size" in stamp:
        return f"{stamp['size']:,} bytes" + (f", digest {stamp['digest'][:8]}" if "digest" in stamp else "")
    return str(stamp)


def file_input(path):
    """A file as a record lists it among the inputs: its path (relative to the project root when inside it) and its
    stamp. check_record compares every such input that still exists with the file as it is."""
    path = Path(path).resolve()
    shown = path.relative_to(root()) if path.is_relative_to(root()) else path
    return {"path": str(shown), **file_stamp(path)}


def _file_inputs(value):
    """The file inputs (file_input) in a record's input value: itself, or those in a list of them."""
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, dict) and "path" in v]


def check_record(path, rerun, **expected):
    """read_record, then compare the inputs it lists with `expected`: name -> (stamp now, what the input is), a stamp
    of None not compared (an input that is gone), and every file input (file_input) that still exists with that file
    now. DataError naming the first input that differs. Returns the record."""
    record = read_record(path, rerun)
    made_from = record["inputs"]
    for name, (now, what) in expected.items():
        if now is not None and made_from.get(name) != now:
            raise DataError(f"{path}: made from other {what} than there are now "
                            f"(then: {_described(made_from.get(name))}; now: {_described(now)}); {rerun}")
    for value in made_from.values():
        for recorded in _file_inputs(value):
            source = root() / recorded["path"]  # an absolute path stays as it is
            if source.exists() and file_stamp(source, "digest" in recorded) != {k: v for k, v in recorded.items()
                                                                                 if k != "path"}:
                raise DataError(f"{path}: made from {source}, which has changed since; {rerun}")
    return record


# ---------------------------------------------------------------------------------------------------
# Files


WRITE_ADVICE = "or use another --root"


def size_text(num_bytes):
    """A size for a message: in GB from 1 GB up, in MB from 1 MB up, else in kB (a small size never reads 0.0 GB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes / 1e3:.1f} kB"


def nearest_existing(folder):
    """`folder` when it exists, else its nearest existing parent (where it would be made)."""
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    return existing


def free_bytes(folder):
    """The bytes free for new files in `folder`, or in its nearest existing parent when it is not made yet."""
    return shutil.disk_usage(nearest_existing(folder)).free


def check_free_space(folder, num_bytes, what, advice="free some space there, or use another --root"):
    """DataError naming `folder`, what it must hold (`what`, num_bytes) and what is free, when it has less room than
    that; steps call it before their long work, so that the work is not lost to a full disk at its end."""
    free = free_bytes(folder)
    if free < num_bytes:
        raise DataError(f"{folder}: {what} needs {size_text(num_bytes)} but only {size_text(free)} is free there; "
                        f"nothing was written; {advice}")


def _temporary_beside(path, advice=WRITE_ADVICE):
    """A new empty file beside `path` (its folder made when missing), named .<name>.<random>.tmp; DataError when the
    folder cannot be written, ending with what to do: make it writable, `advice`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DataError(f"{path.parent}: cannot write in this folder ({exc.strerror or exc}); make it writable, "
                        f"{advice}") from None
    os.close(fd)
    return Path(tmp)


def check_writable(*folders, advice=WRITE_ADVICE):
    """DataError naming the first of `folders` in which no file can be created (for a folder not made yet: its
    nearest existing parent, where it would be made); nothing is left behind. Steps check their output folders at
    the start, so that hours of work are not lost to a folder found read-only at the end."""
    for folder in folders:
        _temporary_beside(nearest_existing(folder) / "write-check", advice).unlink()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on failure removed,
    so a reader never sees a half-written file and an old file survives a failed rewrite."""
    path = Path(path)
    tmp = _temporary_beside(path)
    try:
        yield tmp
        os.chmod(tmp, _NEW_FILE_MODE)  # mkstemp makes files private; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write to an open file names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def take_lock(path, targets, holder):
    """Take the exclusive lock `path` (flock: it ends with the process holding it, however that ends) for a run that
    writes `targets` (a name may be a glob pattern), and remove the temporaries an interrupted write of them left
    (atomic_path's naming; hundreds of MB for a checkpoint, tens of GB for a decoded cache). Returns the open lock file: the lock is held until it is
    closed. DataError when another live process holds it; `holder` says what that process is doing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DataError(f"{path}: {holder}; wait for it to end or stop it first") from None
    for target in map(Path, targets):
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            print(f"removing {stale} ({stale.stat().st_size / 1e6:.1f} MB), left by an interrupted write")
            stale.unlink(missing_ok=True)
    return lock


def save_npy(path, array, made_by=None, **inputs):
    """np.save, atomically; with made_by, then its record (write_record)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    if made_by is not None:
        write_record(path, made_by, **inputs)


def save_gz(path, array, made_by=None, **inputs):
    """Save an array as gzipped .npy (`.npy.gz`), atomically; with made_by, then its record (write_record)."""
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wb", compresslevel=4) as f:
            np.save(f, array)
    if made_by is not None:
        write_record(path, made_by, **inputs)


def load_gz(path):
    """Load a `.npy.gz` array written by save_gz."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file missing")
    try:
        with gzip.open(path, "rb") as f:
            return np.load(f)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as gzipped .npy: {exc}") from None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED = 130  # the exit status of a run stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
RERUN_NOTE = "no file is left half-written; run the same command again"


def stop_now(signum=None, frame=None):
    """Signal handler: stop the run with KeyboardInterrupt, and ignore SIGINT and SIGTERM from then on, so that a
    second Ctrl-C cannot cut short the clean-up that follows (workers finishing their task, partial results kept,
    temporaries removed) and turn it into tracebacks and leftovers."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextlib.contextmanager
def orderly_stop():
    """Inside: SIGINT and SIGTERM stop the run through stop_now (main thread only; elsewhere nothing changes).
    The previous handlers are back on leaving, unless by a stop: then the signals stay ignored until the process
    has exited (a Ctrl-C during the interpreter's exit would end it by SIGINT, not with the script's status)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop_now) for sig in STOP_SIGNALS}
    stopped = False
    try:
        yield
    except KeyboardInterrupt:
        stopped = True
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if stopped else handler)


# The errors of the operating system that a user causes (a full disk, a read-only or forbidden folder, a folder that
# is not there), with what to do; any other OSError is a bug and keeps its traceback.
USER_OS_ERRORS = {
    errno.ENOSPC: "free some space there and run the same command again",
    errno.EDQUOT: "free some space there (the disk quota is reached) and run the same command again",
    errno.EROFS: "the file system is mounted read-only; use another --root (or, for /dev/shm, GALAXY_RAM_DIR)",
    errno.EACCES: "make it writable (or readable) for this user, or use another --root",
    errno.EPERM: "make it writable (or readable) for this user, or use another --root",
    errno.ENOENT: "check the path (a folder or file was removed or never made)",
}


def user_error_message(exc):
    """The one line a script prints for an error the user can cause: a DataError's own text, or for an OSError of
    USER_OS_ERRORS the file, the system's reason and what to do; None for anything else (a bug)."""
    if isinstance(exc, DataError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in USER_OS_ERRORS:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror or os.strerror(exc.errno)}; {USER_OS_ERRORS[exc.errno]}"
    return None


def report_data_errors(work, interrupted=None):
    """Run a script's work() under orderly_stop(); a DataError, or an OSError a user can cause (user_error_message),
    becomes one line `error: ...` on stderr. A stop by Ctrl-C or SIGTERM prints `stopped; <interrupted>` (what is
    kept, what to do) when `interrupted` is given, else the KeyboardInterrupt goes on to the caller. Returns the
    exit status: 0, 1 after such an error, INTERRUPTED."""
    try:
        with orderly_stop():
            work()
    except (DataError, OSError) as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(f"\nstopped; {interrupted}", file=sys.stderr)
        return INTERRUPTED
    return 0


def run_script(parser, work, argv=None, interrupted=None, makes_root=False):
    """The whole main() of a script: add --root to `parser`, parse `argv`, apply --root, then run work(args)
    as report_data_errors does, after check_root unless the script `makes_root`. Returns the exit status."""
    add_root_argument(parser)
    args = parser.parse_args(argv)
    apply_root_argument(args)

    def checked_work():
        if not makes_root:
            check_root()
        work(args)

    return report_data_errors(checked_work, interrupted)


def run_root_only_script(description, work, argv=None):
    """run_script for a script whose one option is --root; work() takes no arguments."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    return run_script(parser, lambda args: work(), argv, RERUN_NOTE)


def hms(seconds):
    """Seconds as H:MM:SS."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
