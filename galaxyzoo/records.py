"""Records: what a derived file was made from.

Every derived file but the ID lists (which are checked against their image folder directly) has a record beside it,
<file>.record.json: the step that wrote it, a stamp of the file itself (its size and content digest; size and
modification time for the decoded caches, tens of GB, which never move) and stamps of its inputs (the IDs of its
rows, the files and folders it was computed from). Readers compare the stamps with the inputs as they are now and
refuse a stale file with the step to rerun. An input that is gone is not compared: it cannot contradict the file.
"""
import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from galaxyzoo import files, paths
from galaxyzoo.errors import DataError

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
    with files.atomic_path(record_path(path)) as tmp:
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
    root = paths.root()
    shown = path.relative_to(root) if path.is_relative_to(root) else path
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
            source = paths.root() / recorded["path"]  # an absolute path stays as it is
            if source.exists() and file_stamp(source, "digest" in recorded) != {k: v for k, v in recorded.items()
                                                                                 if k != "path"}:
                raise DataError(f"{path}: made from {source}, which has changed since; {rerun}")
    return record




def forget_folder_stamps():
    """Drop the folder stamps made so far (folders written since are stamped afresh)."""
    _folder_stamps.clear()


def save_npy(path, array, made_by=None, **inputs):
    """np.save, atomically; with made_by, then its record (write_record)."""
    with files.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    if made_by is not None:
        write_record(path, made_by, **inputs)


def save_gz(path, array, made_by=None, **inputs):
    """Save an array as gzipped .npy (`.npy.gz`), atomically; with made_by, then its record (write_record)."""
    with files.atomic_path(path) as tmp:
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
