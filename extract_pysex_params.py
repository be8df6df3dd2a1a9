"""Measure the central galaxy of every image SExtractor-style, for the optional centring/rescaling of the
input images (step 3).

Usage: extract_pysex_params.py [--root DIR] [--subsets train test] [--workers N] [--limit N]
                               [--backend sep|sextractor]

As in the original solution, SExtractor's algorithms are run on the green channel of each image (float in
[0, 1]), transposed as the pysex wrapper passed it, and the galaxy kept is the most salient detection: the one
with the largest isophotal ellipse area pi * a * b weighted by the centrality prior exp(-d^2 / 5000), d being
the distance of its barycentre from (211.5, 211.5). Two parameter sets are written (their files and columns:
source_params.py), one row per image in load_data.load_ids order (the first N images only with --limit N),
float64: the original's second-generation set ("gen2", used for the centring and rescaling), detected at
2 sigma, and its first-generation set ("extra"), detected at 10 sigma, with all four radii.

Two backends. `sep` (default) rebuilds SExtractor's measurements on the `sep` library, which installs with
pip; on the real images of the shared sample it reproduces the original's published values (centre within
1 px and Petrosian radius within 5%) for 99.7% (gen2) and 99.5% (extra) of 1,551 images (see
tests/test_pysex_agreement.py). `sextractor` runs the SExtractor program itself (Debian's `source-extractor`)
configured as the original ran it (sextractor.py).

The columns and how each is measured: galaxyzoo/source_extraction.py.

A run stopped by Ctrl-C or an error keeps the images measured so far in data/pysex_params_<subset>.partial.npz
(also every minute); the same command then continues from there.

An image where nothing is detected or a measurement fails gets, as in the original, x = y = 211.5 (no shift)
and NaN in every other column; those rows are counted in the printed summary.
"""
import argparse
import json
import os
import signal
import sys
import time

import numpy as np
from tqdm import tqdm

import load_data
from galaxyzoo import files, parallel, paths, records, runner, sextractor, source_params
from galaxyzoo.source_extraction import BACKENDS, IMAGE_CENTRE, PIXEL_ORIGIN, measure_image
from galaxyzoo.source_params import PARAM_SETS, target_path

PARTIAL_SAVE_SECONDS = 60  # how often an unfinished run keeps what it has measured


# ---------------------------------------------------------------------------------------------------
# Driver


def init_worker():
    """Pool initialiser: the workers leave Ctrl-C to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def partial_path(subset):
    """data/pysex_params_<subset>.partial.npz: the images of an unfinished run measured so far."""
    return paths.data_dir() / f"pysex_params_{subset}.partial.npz"


def save_partial(subset, backend, galaxy_ids, results):
    """Keep the results of the first len(results) of galaxy_ids, for a rerun to continue from."""
    done = np.asarray(galaxy_ids[:len(results)], dtype=np.int64)
    with files.atomic_path(partial_path(subset)) as tmp, open(tmp, "wb") as file:
        np.savez(file, galaxy_ids=done, backend=backend, results=json.dumps(results), images=images_stamp(subset, done))


def images_stamp(subset, galaxy_ids):
    """A digest of the size and modification time of the image file of each of galaxy_ids: the images measured, as a
    partial file records them (when one has changed since, the run starts over)."""
    folder = paths.raw_images_dir(subset)
    stats = (os.stat(folder / f"{galaxy_id}.jpg") for galaxy_id in galaxy_ids)
    return records.ids_stamp([value for stat in stats for value in (stat.st_size, stat.st_mtime_ns)])["digest"]


def load_partial(subset, backend, galaxy_ids):
    """The results an earlier run of the same backend kept for a prefix of galaxy_ids, else []."""
    path = partial_path(subset)
    if not path.exists():
        return []
    try:
        with np.load(path) as saved:
            done, saved_backend, results = saved["galaxy_ids"], str(saved["backend"]), json.loads(str(saved["results"]))
            images = str(saved["images"])
    except (OSError, ValueError, KeyError) as exc:
        print(f"{path}: unreadable ({exc}); starting {subset} from the first image")
        return []
    if (saved_backend != backend or len(done) > len(galaxy_ids) or (done != galaxy_ids[:len(done)]).any()
            or images != images_stamp(subset, done)):
        print(f"{path}: made by another backend or for other images; starting {subset} from the first image")
        return []
    print(f"{path}: continuing after the {len(done)} images measured by an earlier run")
    return results


def extract_subset(subset, workers, limit=None, backend="sep"):
    """Measure every image of a subset (the first `limit` ones when given) with a backend of BACKENDS,
    in parallel. After an interruption (Ctrl-C) or an error, the images measured so far are kept in
    partial_path(subset) and the next run of the same backend over the same IDs continues from there.
    Returns ({set name: (N, columns) float64 array}, {set name: list of failure messages}, seconds)."""
    ids = load_data.load_ids(subset)
    if limit is not None:
        ids = ids[:limit]
    results = load_partial(subset, backend, ids)
    layout = paths.current()
    tasks = [(int(galaxy_id), subset, backend, layout) for galaxy_id in ids[len(results):]]
    start = time.time()
    progress = dict(total=len(ids), initial=len(results), desc=f"{backend} {subset}", unit="img")
    last_save = time.time()
    try:
        with parallel.process_pool(max(workers, 1), initializer=init_worker) as pool:
            chunksize = max(1, min(20, len(tasks) // (4 * max(workers, 1))))
            for result in tqdm(pool.map(measure_image, tasks, chunksize=chunksize), **progress):
                results.append(result)
                if time.time() - last_save > PARTIAL_SAVE_SECONDS:
                    save_partial(subset, backend, ids, results)
                    last_save = time.time()
    except BaseException:
        if results:
            save_partial(subset, backend, ids, results)
        raise
    seconds = time.time() - start
    arrays, failures = {}, {}
    for k, param_set in enumerate(PARAM_SETS):
        rows = [result[k][0] for result in results]
        arrays[param_set.name] = np.array(rows, dtype=np.float64).reshape(len(ids), len(param_set.columns))
        failures[param_set.name] = [result[k][1] for result in results if result[k][1] is not None]
    return arrays, failures, seconds


def percentiles_line(name, values):
    """'name: p5 / p50 / p95' over the finite values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return f"  {name:>14}: no values"
    p5, p50, p95 = np.percentile(finite, [5, 50, 95])
    return f"  {name:>14}: {p5:8.2f} {p50:8.2f} {p95:8.2f}"


def summary_lines(param_set, array, failures):
    """Human-readable summary of one parameter set's array (N, columns)."""
    column = {name: array[:, k] for k, name in enumerate(param_set.columns)}
    measured = np.isfinite(column["a"])
    shift = np.hypot(column["x"] - IMAGE_CENTRE, column["y"] - IMAGE_CENTRE)[measured]
    lines = [f" {param_set.name} (DETECT_THRESH {param_set.detect_thresh:g}): {len(array)} images, "
             f"{len(failures)} without a measurement ({sum(f == 'no source' for f in failures)} no source)"]
    lines += [f"    {failure}" for failure in failures if failure != "no source"][:5]
    lines.append("  percentiles      5%      50%      95%")
    lines.append(percentiles_line("centre shift", shift))
    lines.append(percentiles_line("0-based offset", np.hypot(column["x"] - PIXEL_ORIGIN - IMAGE_CENTRE,
                                                             column["y"] - PIXEL_ORIGIN - IMAGE_CENTRE)[measured]))
    for name in param_set.columns[2:]:
        if name != "theta":
            lines.append(percentiles_line(name, column[name]))
    lines.append(percentiles_line("petro_r * a", column["petro_radius"] * column["a"]))
    return lines


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subsets", nargs="+", choices=paths.SUBSETS, default=list(paths.SUBSETS))
    runner.add_options(parser, "workers")
    parser.add_argument("--limit", type=int, default=None, help="measure only the first N images of each subset")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sep",
                        help="sep (default): the sep library, installed with the project; sextractor: the "
                             "SExtractor program itself (package source-extractor), as the original ran it")
    return parser


def check_room(subsets, limit):
    """DataError, before any image is measured, when data/ has no room for the partial and parameter files."""
    num_images = sum(len(load_data.load_ids(subset)[:limit]) for subset in subsets)
    # per value: its JSON text in the partial file (up to 24 characters) and a float64 in the parameter file
    per_image = sum(len(param_set.columns) for param_set in PARAM_SETS) * (24 + 8)
    files.check_free_space(paths.data_dir(), num_images * per_image, f"the parameters of {num_images} images")


def extract_and_save(subsets, workers, limit, backend):
    """Measure every image of `subsets`, print the summaries and write the parameter files."""
    if backend == "sextractor":
        print(f"backend: {sextractor.version(sextractor.find_program())}")
    check_room(subsets, limit)
    for subset in subsets:
        arrays, failures, seconds = extract_subset(subset, workers, limit, backend)
        count = len(next(iter(arrays.values())))
        print(f"{subset}: {count} images in {runner.hms(seconds)} "
              f"({1000 * seconds / max(count, 1):.1f} ms per image, {workers} workers)")
        print("  centre shift: distance of (x, y) from (211.5, 211.5), the shift the centring applies\n"
              "  0-based offset: distance of the galaxy from the image centre\n"
              "  a, b, flux_radius, fwhm in px; petro_radius, kron_radius in units of the ellipse")
        for param_set in PARAM_SETS:
            path = target_path(param_set, subset)
            records.save_gz(path, arrays[param_set.name], f"extract_pysex_params.py --backend {backend}",
                              **source_params.record_inputs(subset, load_data.load_ids(subset)[:count]))
            print("\n".join(summary_lines(param_set, arrays[param_set.name], failures[param_set.name])))
            print(f"  saved {path}")
        partial_path(subset).unlink(missing_ok=True)


def main(argv=None):
    return runner.run_script(
        argument_parser(), lambda args: extract_and_save(args.subsets, args.workers, args.limit, args.backend), argv,
        "the images measured so far are kept in data/pysex_params_<subset>.partial.npz, and the same command "
        "continues from there")


if __name__ == "__main__":
    sys.exit(main())
