"""Copy the images to RAM (/dev/shm) and, optionally, decode them once into a uint8 cache.

    python copy_data_to_shm.py [--root ROOT] [--subsets train test] [--cache] [--workers N]
    python copy_data_to_shm.py [--root ROOT] --remove        # delete the RAM copy of ROOT's images

As in the original solution, data/raw/images_{train,test}_rev1/ are copied to a folder in /dev/shm
(paths.ram_dir(); the GALAXY_RAM_DIR environment variable chooses another folder), so that reading
images during training never waits on the disk. Files already there with the same size and modification time are
skipped, and copies of images no longer in data/raw removed: readers refuse a RAM copy that differs from data/raw.

With --cache, each subset is also decoded into one (N, 424, 424, 3) uint8 .npy in ID order
(paths.cache_path), which load_data.load_image then memory-maps instead of decoding JPEGs, with its record
(the IDs and the image files it was decoded from), without which it is not read.
That needs 424*424*3 bytes per image: about 33 GB for the 61,578 training images and 43 GB for the
79,975 test images, so it is for machines with that much RAM to spare.

A RAM copy stays until the machine restarts or `--remove` deletes it (files in /dev/shm take RAM): the JPEGs of the
real data take about 1.8 GB, the demo's 3,000 synthetic images 59 MB and their caches 1.6 GB.
"""
import argparse
import shutil
import sys
import time

import numpy as np
from tqdm import tqdm

import load_data
from galaxyzoo import parallel
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors

IMAGE_SHAPE = (load_data.IMAGE_SIZE, load_data.IMAGE_SIZE, 3)
BATCH_SIZE = 64  # images decoded per task handed to a worker process


def check_ram_folder():
    """DataError when the folder that should hold the RAM copy cannot be made (e.g. no /dev/shm)."""
    parent = paths.ram_dir().parent
    if not parent.is_dir():
        raise errors.DataError(f"{parent}: folder does not exist (this system has no /dev/shm?); "
                                  f"set GALAXY_RAM_DIR to a folder on a RAM disk, or skip this step "
                                  f"(images are then read from data/raw)")


def copy_images(subset):
    """Copy data/raw/<images folder> to the RAM copy, skipping files already there with the same size.
    Returns (number copied, number skipped)."""
    source, target = source_folder(subset), paths.ram_images_dir(subset)
    target.mkdir(parents=True, exist_ok=True)
    copied = skipped = 0
    source_files = sorted(source.glob("*.jpg"))
    for source_file in tqdm(source_files, desc=f"copy {subset}", unit="img", disable=None):
        target_file = target / source_file.name
        if is_copied(source_file, target_file):
            skipped += 1
            continue
        with files.atomic_path(target_file) as tmp:
            shutil.copyfile(source_file, tmp)
            shutil.copystat(source_file, tmp)  # the modification time too: load_data compares the copy with data/raw
        copied += 1
    for stale in sorted({p.name for p in target.glob("*.jpg")} - {p.name for p in source_files}):
        (target / stale).unlink()  # an image no longer in data/raw
    load_data.forget_cached()  # this process's stamp of the RAM folder, if it made one, is out of date
    return copied, skipped


def source_folder(subset):
    """data/raw's image folder of a subset; DataError when it is missing."""
    source = paths.raw_images_dir(subset)
    if not source.is_dir():
        raise paths.missing_image_folder(source)
    return source


def is_copied(source_file, target_file):
    """Whether target_file is already a copy of source_file: the same size and modification time."""
    if not target_file.exists():
        return False
    source, target = source_file.stat(), target_file.stat()
    return (source.st_size, source.st_mtime_ns) == (target.st_size, target.st_mtime_ns)


def build_cache(subset, workers):
    """Decode every image of a subset (in data/<subset>_ids.npy order) into paths.cache_path(subset).
    Returns (number of images, path written)."""
    load_data.forget_cached()
    galaxy_ids = load_data.load_ids(subset)
    image_files = [load_data.image_path(galaxy_id, subset) for galaxy_id in galaxy_ids]
    target = paths.cache_path(subset)
    write_cache(target, galaxy_ids, image_files, workers, desc=f"cache {subset}")
    records.write_record(target, "copy_data_to_shm.py --cache", by_content=False, ids=records.ids_stamp(galaxy_ids),
                           images=records.folder_stamp(paths.raw_images_dir(subset)))
    load_data.forget_cached()
    return len(galaxy_ids), target


def write_cache(target, galaxy_ids, paths, workers=1, desc="decode"):
    """Decode the JPEGs `paths` (of `galaxy_ids`, for error messages) into an (N, 424, 424, 3) uint8 .npy
    at `target`, row i from paths[i], using `workers` processes. Atomic: on any error no file is left."""
    shape = (len(paths),) + IMAGE_SHAPE
    files.check_free_space(target.parent, int(np.prod(shape)), f"the decoded cache {target.name}",
                               advice="set GALAXY_RAM_DIR to a larger RAM disk")
    target.parent.mkdir(parents=True, exist_ok=True)
    tasks = [(i, int(g), str(p)) for i, (g, p) in enumerate(zip(galaxy_ids, paths))]
    batches = [tasks[start:start + BATCH_SIZE] for start in range(0, len(tasks), BATCH_SIZE)]
    with files.atomic_path(target) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape).flush()
        with tqdm(total=len(tasks), desc=desc, unit="img", disable=None) as bar:
            for done in _decode_batches(tmp, batches, workers):
                bar.update(done)


def _decode_batches(cache_file, batches, workers):
    """Run _decode_batch over `batches`, in this process or a pool; yields images done per batch."""
    if workers <= 1:
        _open_for_writing(cache_file)
        try:
            yield from map(_decode_batch, batches)
        finally:
            _open_for_writing(None)
        return
    with parallel.process_pool(workers, initializer=_open_for_writing, initargs=(cache_file,)) as pool:
        yield from parallel.imap_unordered(pool, _decode_batch, batches)


_cache_being_written = None  # the memory map that _decode_batch fills, one per process


def _open_for_writing(cache_file):
    """Open the cache file being built (None: close it)."""
    global _cache_being_written
    _cache_being_written = None if cache_file is None else np.load(cache_file, mmap_mode="r+")


def _decode_batch(batch):
    """Decode [(row, galaxy_id, path), ...] into the open cache; returns how many were decoded."""
    for row, galaxy_id, path in batch:
        _cache_being_written[row] = load_data.decode_jpeg(path, galaxy_id)
    _cache_being_written.flush()
    return len(batch)


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", nargs="+", choices=paths.SUBSETS, default=list(paths.SUBSETS),
                        help="which image folders to copy (default: both)")
    parser.add_argument("--cache", action="store_true",
                        help="also decode each subset into a uint8 .npy cache (424*424*3 bytes per image)")
    runner.add_options(parser, "workers")
    parser.add_argument("--remove", action="store_true",
                        help="delete this root's RAM copy (images and caches) instead, giving its RAM back")
    return parser


def bytes_to_write(subset, cache):
    """(bytes of the subset's JPEGs not yet in the RAM copy, bytes of its decoded cache or 0)."""
    source, target = source_folder(subset), paths.ram_images_dir(subset)
    jpegs = 0
    for source_file in source.glob("*.jpg"):
        if not is_copied(source_file, target / source_file.name):
            jpegs += source_file.stat().st_size
    return jpegs, (len(load_data.load_ids(subset)) * int(np.prod(IMAGE_SHAPE)) if cache else 0)


def check_space_for_everything(subsets, cache):
    """Refuse, before anything is written, a run whose copies and caches do not fit in the RAM folder's free
    space, with the numbers and what would fit. (A rebuilt cache replaces the old one only once it is complete,
    so its full size is needed even when a cache exists.)"""
    needs = {subset: bytes_to_write(subset, cache) for subset in subsets}
    total = sum(jpegs + cached for jpegs, cached in needs.values())
    folder = paths.ram_dir() if paths.ram_dir().exists() else paths.ram_dir().parent
    free = shutil.disk_usage(folder).free
    if total > free:
        size = files.size_text
        parts = "; ".join(f"{subset}: JPEGs {size(jpegs)}" + (f", cache {size(cached)}" if cache else "")
                          for subset, (jpegs, cached) in needs.items())
        raise errors.DataError(f"{folder}: this needs {size(total)} ({parts}) but only {size(free)} "
                                  f"is free; nothing was written. Copy without --cache, cache one subset at a time "
                                  f"(--subsets ...), or set GALAXY_RAM_DIR to a larger RAM disk")


def copy_and_cache(subsets, cache, workers):
    """Copy each subset's images to RAM and, when `cache`, build its decoded cache; prints what it did."""
    check_ram_folder()
    files.check_writable(paths.ram_dir(), advice="or set GALAXY_RAM_DIR to another folder")
    check_space_for_everything(subsets, cache)  # and the input folders, before the lock makes the RAM folder
    targets = [path for subset in subsets for path in (paths.ram_images_dir(subset) / "*.jpg",
                                                       paths.cache_path(subset))]
    lock = files.take_lock(paths.ram_dir() / "copy.lock", targets, "another copy_data_to_shm.py is writing here")
    try:
        for subset in subsets:
            copy_subset(subset, cache, workers)
    finally:
        lock.close()


def remove_copy():
    """Delete the RAM copy of this root's images (paths.ram_dir()) and say how much it held."""
    folder = paths.ram_dir()
    if not folder.is_dir():
        print(f"{folder}: no RAM copy to remove")
        return
    lock = files.take_lock(folder / "copy.lock", [], "a copy_data_to_shm.py is writing here")
    try:
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder)
    finally:
        lock.close()
    print(f"removed {folder} ({files.size_text(size)})")


def copy_subset(subset, cache, workers):
    """Copy one subset's images to RAM and, when `cache`, build its decoded cache; prints what it did."""
    start = time.time()
    copied, skipped = copy_images(subset)
    print(f"{subset}: copied {copied} images, {skipped} already there -> "
          f"{paths.ram_images_dir(subset)} ({runner.hms(time.time() - start)})")
    if cache:
        start = time.time()
        count, path = build_cache(subset, workers)
        print(f"{subset}: decoded {count} images -> {path} ({runner.hms(time.time() - start)})")


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    def work(args):
        if args.remove:
            remove_copy()
        else:
            copy_and_cache(args.subsets, args.cache, args.workers)

    return runner.run_script(argument_parser(), work, argv, "the images copied so far are kept (the same command "
                                "skips them); no cache is left half-written")


if __name__ == "__main__":
    sys.exit(main())
