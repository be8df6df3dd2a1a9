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

What each column holds (SExtractor's catalogue parameter in brackets):
    x, y          isophotal barycentre [Y_IMAGE, X_IMAGE of the transposed image], 1-based like SExtractor's
                  (the first pixel's centre is 1.0); x counts columns and y rows. The centring shifts an
                  image by (x - 211.5, y - 211.5), as in the original, which compared these 1-based values
                  with the 0-based centre (424 - 1) / 2 and so shifted every image by 1 px more in x and in y
                  than its galaxy's offset; the 1-based values are kept so that the original's shifts are
                  reproduced
    a, b          semi-major and semi-minor axis of the isophotal second-moment ellipse, px [A_IMAGE, B_IMAGE]
    theta         major-axis angle in degrees in [0, 180], from the x (column) axis towards the y (row) axis
                  [90 - THETA_IMAGE of the transposed image, as the original stored it]
    petro_radius  Petrosian aperture factor in units of the ellipse (a along the major axis) [PETRO_RADIUS]:
                  2 * k_p, at least 3.5, where k_p is the first elliptical radius (scanned in steps of 0.3 up
                  to 6) at which the mean surface brightness in the annulus [k, 1.2 k] falls below 0.2 times the
                  mean inside 1.1 k; so petro_radius * a is twice the Petrosian radius along the major axis, px
    kron_radius   Kron aperture factor in units of the ellipse [KRON_RADIUS]: 2.5 * the first moment of
                  elliptical radius within 6, at least 3.5
    flux_radius   radius of the circle holding half of FLUX_AUTO (the flux inside the Kron ellipse), from the
                  growth curve out to 6 a, px [FLUX_RADIUS]
    fwhm          FWHM of a Gaussian fitted to the object's pixels above max(peak / 5, analysis threshold), px
                  [FWHM_IMAGE]
Like SExtractor, the radii leave out the pixels of neighbouring detections ("blanking"), and FLUX_AUTO and
the growth curve take instead the pixel symmetric about the galaxy's centre (its default MASK_TYPE CORRECT).

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
import sep
from scipy import ndimage
from tqdm import tqdm

import load_data
import parallel
import sextractor
import source_params
from source_params import PARAM_SETS, target_path

IMAGE_CENTRE = (load_data.IMAGE_SIZE - 1) / 2.0  # 211.5: the salience prior's centre and the no-source default
CENTRALITY_SCALE = 5000.0  # the salience prior is exp(-d^2 / CENTRALITY_SCALE)
GREEN = 1  # the channel measured, as in the original
PIXEL_ORIGIN = 1.0  # SExtractor's coordinate of the first pixel's centre (sep's is 0)
DEFAULT_WORKERS = 8  # the original's process count, capped by the machine's cores
PARTIAL_SAVE_SECONDS = 60  # how often an unfinished run keeps what it has measured

# SExtractor's defaults (`sex -d`), which the original left unchanged apart from DETECT_THRESH.
BACK_SIZE = 64
BACK_FILTERSIZE = 3
DETECT_MINAREA = 5
ANALYSIS_THRESH = 1.5  # in units of the background RMS; the FWHM fit ignores pixels below it
DEBLEND_NTHRESH = 32
DEBLEND_MINCONT = 0.005
CLEAN_PARAM = 1.0
AUTO_PARAMS = (2.5, 3.5)  # PHOT_AUTOPARAMS: Kron factor, minimum aperture
PETRO_PARAMS = (2.0, 3.5)  # PHOT_PETROPARAMS: Petrosian factor, minimum aperture
FLUX_FRACTION = 0.5  # PHOT_FLUXFRAC
ANALYSIS_RADIUS = 6.0  # 3 * MARGIN_SCALE: how far (in ellipse units, or in a) the apertures are analysed
PETRO_RATIO = 0.2  # the Petrosian eta: annulus over interior surface brightness
PETRO_STEPS = 20  # the elliptical radius is scanned in steps of ANALYSIS_RADIUS / PETRO_STEPS
PETRO_ANNULUS = 1.2  # annulus [k, 1.2 k]; the interior is the disc inside its mid-radius 1.1 k
FWHM_PEAK_FRACTION = 0.2  # the FWHM fit uses pixels above a fifth of the peak


class NoSourceFound(Exception):
    """Nothing above the detection threshold."""


# ---------------------------------------------------------------------------------------------------
# Detection (in the frame SExtractor saw: the pysex wrapper wrote numpy's rows as the FITS image's columns)


def prepare(green):
    """The green channel (H, W) float64, as the image is stored, -> (the transposed image less SExtractor's
    mesh background (64 px meshes, 3x3 median filter), its global background RMS). Everything below
    measures in this transposed frame; `measure` maps the results back. The frame matters beyond naming:
    deblending and cleaning depend on the order in which rows are scanned."""
    image = np.ascontiguousarray(green.T)
    background = sep.Background(image, bw=BACK_SIZE, bh=BACK_SIZE, fw=BACK_FILTERSIZE, fh=BACK_FILTERSIZE)
    return image - background.back(), background.globalrms


def detect(data, rms, detect_thresh):
    """Detect sources above detect_thresh * rms in a background-subtracted (H, W) float64 image, after
    convolving with SExtractor's default 3x3 kernel, deblending and cleaning as SExtractor does by default.
    Returns (sep object records, segmentation map (H, W) int); raises NoSourceFound when nothing is found."""
    objects, segmap = sep.extract(data, detect_thresh, err=rms, minarea=DETECT_MINAREA,
                                  filter_kernel=sep.default_kernel, filter_type="conv",
                                  deblend_nthresh=DEBLEND_NTHRESH, deblend_cont=DEBLEND_MINCONT,
                                  clean=True, clean_param=CLEAN_PARAM, segmentation_map=True)
    if len(objects) == 0:
        raise NoSourceFound
    return objects, segmap


def most_salient(x, y, a, b):
    """Index of the detection with the largest pi * a * b * exp(-d^2 / 5000), d measured from (211.5, 211.5)
    in the stored 1-based convention, as in the original; x, y: (N,) 0-based centres, a, b: (N,) axes."""
    d2 = (x + PIXEL_ORIGIN - IMAGE_CENTRE) ** 2 + (y + PIXEL_ORIGIN - IMAGE_CENTRE) ** 2
    return int(np.argmax(np.pi * a * b * np.exp(-d2 / CENTRALITY_SCALE)))


def neighbour_pixels(data, rms, detect_thresh, segmap, index):
    """The pixels SExtractor blanks (sets to -BIG) before measuring detection `index`: every pixel above the
    detection threshold in the filtered image that is not the object's own, except those of detections that
    cleaning merged into a neighbour (sep leaves them out of the segmentation map; SExtractor keeps them
    as part of the object that absorbed them). Returns a (H, W) bool array."""
    kernel = sep.default_kernel / sep.default_kernel.sum()
    above = ndimage.correlate(data, kernel, mode="constant") > detect_thresh * rms
    regions, _ = ndimage.label(above, structure=np.ones((3, 3)))
    detectable = np.bincount(regions.ravel())[regions] >= DETECT_MINAREA
    merged_by_cleaning = above & detectable & (segmap == 0)
    return above & (segmap != index + 1) & ~merged_by_cleaning


# ---------------------------------------------------------------------------------------------------
# Measurements of one object (obj: one sep record; data: the background-subtracted image; blanked: the
# neighbours' pixels). SExtractor computes in single precision; so do these, where it changes a result.


def elliptical_box(data, obj, extent):
    """Row and column indices (2-D) of the bounding box of the ellipse r = extent clipped to the image, and
    the float32 squared elliptical radii r^2 = cxx dx^2 + cyy dy^2 + cxy dx dy there (r = 1 on the
    isophotal ellipse)."""
    cxx, cyy, cxy = np.float32(obj["cxx"]), np.float32(obj["cyy"]), np.float32(obj["cxy"])
    x0, y0 = np.float32(obj["x"]), np.float32(obj["y"])
    half_width = cxx - cxy * cxy / (4.0 * cyy)
    half_height = cyy - cxy * cxy / (4.0 * cxx)
    half_width = extent / np.sqrt(half_width) if half_width > 0 else 0.0
    half_height = extent / np.sqrt(half_height) if half_height > 0 else 0.0
    height, width = data.shape
    x_lo, x_hi = max(int(np.rint(x0 - half_width)), 0), min(int(np.rint(x0 + half_width)) + 1, width)
    y_lo, y_hi = max(int(np.rint(y0 - half_height)), 0), min(int(np.rint(y0 + half_height)) + 1, height)
    rows, cols = np.mgrid[y_lo:y_hi, x_lo:x_hi]
    dx = (cols - x0).astype(np.float32)
    dy = (rows - y0).astype(np.float32)
    return rows, cols, cxx * dx * dx + cyy * dy * dy + cxy * dx * dy


def petrosian_radius(data, obj, blanked):
    """SExtractor's PETRO_RADIUS of one object, in units of its ellipse (see the module docstring);
    blanked pixels take no part."""
    rows, cols, r2 = elliptical_box(data, obj, ANALYSIS_RADIUS)
    keep = ~blanked[rows, cols]
    r2, values = r2[keep], data[rows, cols][keep].astype(np.float32)
    order = np.argsort(r2)
    r2, cumulative = r2[order], np.concatenate([[0.0], np.cumsum(values[order], dtype=np.float64)])
    step = np.float32(ANALYSIS_RADIUS / PETRO_STEPS)
    k_min, k_mid = step, 0.0
    mean_annulus = mean_inside = 0.0
    while (k_max := np.float32(k_min * PETRO_ANNULUS)) < ANALYSIS_RADIUS:
        k_mid = np.float32((k_min + k_max) / 2.0)
        annulus_lo = np.searchsorted(r2, k_min * k_min, side="left")
        annulus_hi = np.searchsorted(r2, k_max * k_max, side="right")
        inside = np.searchsorted(r2, k_mid * k_mid, side="left")
        mean_annulus = mean_inside = 0.0
        if annulus_hi > annulus_lo and inside > 0:
            mean_annulus = (cumulative[annulus_hi] - cumulative[annulus_lo]) / (annulus_hi - annulus_lo)
            mean_inside = cumulative[inside] / inside
            if mean_annulus < PETRO_RATIO * mean_inside:
                break
        k_min = np.float32(k_min + step)
    # As in SExtractor, the last radius tried counts when the ratio never fell below eta.
    if mean_annulus != 0.0 and mean_inside != 0.0:
        return max(PETRO_PARAMS[0] * float(k_mid), PETRO_PARAMS[1])
    return PETRO_PARAMS[1]


def kron_radius(data, obj, blanked):
    """SExtractor's KRON_RADIUS of one object, in units of its ellipse: 2.5 * sum(r I) / sum(I) over
    r <= 6 without the blanked pixels, at least 3.5 (also when the sums are not positive)."""
    rows, cols, r2 = elliptical_box(data, obj, ANALYSIS_RADIUS)
    keep = (r2 <= ANALYSIS_RADIUS ** 2) & ~blanked[rows, cols]
    values = data[rows, cols][keep].astype(np.float32).astype(np.float64)
    first_moment, total = (np.sqrt(r2[keep]) * values).sum(), values.sum()
    if first_moment > 0 and total > 0:
        return max(AUTO_PARAMS[0] * first_moment / total, AUTO_PARAMS[1])
    return AUTO_PARAMS[1]


def symmetric_fill(data, obj, blanked):
    """SExtractor's MASK_TYPE CORRECT: a copy of data in which each blanked pixel takes the value of the pixel
    symmetric to it about the object's centre, or 0 when that one is blanked too or off the image."""
    filled = data.copy()
    rows, cols = np.nonzero(blanked)
    x0, y0 = np.float32(obj["x"]), np.float32(obj["y"])
    mirror_cols = (2 * x0 + 0.49999 - cols).astype(np.int64)
    mirror_rows = (2 * y0 + 0.49999 - rows).astype(np.int64)
    height, width = data.shape
    inside = (mirror_cols >= 0) & (mirror_cols < width) & (mirror_rows >= 0) & (mirror_rows < height)
    mirror_rows, mirror_cols = np.where(inside, mirror_rows, 0), np.where(inside, mirror_cols, 0)
    usable = inside & ~blanked[mirror_rows, mirror_cols]
    filled[rows, cols] = np.where(usable, data[mirror_rows, mirror_cols], 0.0)
    return filled


def flux_radius(filled, obj, kron):
    """SExtractor's FLUX_RADIUS (px) measured on the symmetric-filled image: the circle holding half of
    FLUX_AUTO, the flux of pixels whose centre lies inside the Kron ellipse (kron in ellipse units);
    capped at 6 a like SExtractor."""
    ellipse = [np.array([obj[field]], dtype=np.float64) for field in ("x", "y", "a", "b", "theta")]
    flux_auto, _, _ = sep.sum_ellipse(filled, *ellipse, kron, subpix=1)
    limit = ANALYSIS_RADIUS * float(obj["a"])
    radius, _ = sep.flux_radius(filled, *ellipse[:2], np.array([limit]), FLUX_FRACTION, normflux=flux_auto,
                                subpix=5)
    return min(float(radius[0]), limit)


def gaussian_fwhm(data, segmap, index, obj, analysis_thresh):
    """SExtractor's FWHM_IMAGE (px): fit log(I) = c - beta d^2 (weights I^2) to the object's pixels above
    max(peak / 5, analysis_thresh); beta is kept at least 1 / (13 a b); FWHM = 1.6651 / sqrt(beta) less
    SExtractor's undersampling correction 1 / (4 FWHM). 0 when no fit is possible, as in SExtractor."""
    floor = max(FWHM_PEAK_FRACTION * float(obj["peak"]), analysis_thresh)
    if floor <= 0.0:
        return 0.0
    rows, cols = np.nonzero(segmap == index + 1)
    values = data[rows, cols]
    keep = values > floor
    values = values[keep]
    d2 = (cols[keep] - obj["x"]) ** 2 + (rows[keep] - obj["y"]) ** 2
    weights = values * values
    log_values = np.log(values)
    s, sx, sxx = weights.sum(), (d2 * weights).sum(), (d2 * d2 * weights).sum()
    sy, sxy = (log_values * weights).sum(), (log_values * d2 * weights).sum()
    determinant = s * sxx - sx * sx
    if determinant == 0.0:
        return 0.0
    beta = max(-(s * sxy - sx * sy) / determinant, 1.0 / (13.0 * obj["a"] * obj["b"]))
    fwhm = 1.6651 / np.sqrt(beta)
    return float(fwhm - 1.0 / (4.0 * fwhm))


def stored_row(param_set, x, y, theta, **values):
    """param_set's row in the stored conventions from values measured in the transposed frame: x, y its
    0-based column and row, theta in degrees from its x axis towards its y axis, the rest as stored."""
    values.update(x=y + PIXEL_ORIGIN, y=x + PIXEL_ORIGIN, theta=90.0 - theta)
    return [float(values[column]) for column in param_set.columns]


def measure(data, rms, param_set):
    """param_set's row for the output of `prepare`. Raises NoSourceFound, or sep's Exception when a
    measurement fails."""
    objects, segmap = detect(data, rms, param_set.detect_thresh)
    index = most_salient(objects["x"], objects["y"], objects["a"], objects["b"])
    obj = objects[index]
    blanked = neighbour_pixels(data, rms, param_set.detect_thresh, segmap, index)
    values = dict(x=obj["x"], y=obj["y"], a=obj["a"], b=obj["b"], theta=np.degrees(obj["theta"]),
                  petro_radius=petrosian_radius(data, obj, blanked))
    if "kron_radius" in param_set.columns:
        values["kron_radius"] = kron_radius(data, obj, blanked)
        values["flux_radius"] = flux_radius(symmetric_fill(data, obj, blanked), obj, values["kron_radius"])
        values["fwhm"] = gaussian_fwhm(data, segmap, index, obj, ANALYSIS_THRESH * rms)
    return stored_row(param_set, **values)


def sep_backend(green):
    """The sep backend for the green channel (H, W) float64 as the image is stored: a function of a parameter
    set returning its row (the background is estimated once for both sets)."""
    data, rms = prepare(green)
    return lambda param_set: measure(data, rms, param_set)


# The SExtractor catalogue parameter of each stored column (before the change of frame).
SEXTRACTOR_PARAMETERS = {"x": "X_IMAGE", "y": "Y_IMAGE", "a": "A_IMAGE", "b": "B_IMAGE", "theta": "THETA_IMAGE",
                         "flux_radius": "FLUX_RADIUS", "kron_radius": "KRON_RADIUS",
                         "petro_radius": "PETRO_RADIUS", "fwhm": "FWHM_IMAGE"}


def measure_with_sextractor(green, param_set, program):
    """param_set's row for the green channel (H, W) float64, measured by the SExtractor program on the
    transposed image, as the original did."""
    names = [SEXTRACTOR_PARAMETERS[column] for column in param_set.columns]
    found = sextractor.catalogue(green.T, param_set.detect_thresh, names, program)
    if len(found["X_IMAGE"]) == 0:
        raise NoSourceFound
    x, y = found["X_IMAGE"] - PIXEL_ORIGIN, found["Y_IMAGE"] - PIXEL_ORIGIN
    index = most_salient(x, y, found["A_IMAGE"], found["B_IMAGE"])
    values = {column: found[SEXTRACTOR_PARAMETERS[column]][index] for column in param_set.columns}
    values.update(x=x[index], y=y[index])
    return stored_row(param_set, **values)


def sextractor_backend(green):
    """The sextractor backend, with sep_backend's signature."""
    program = sextractor.find_program()
    return lambda param_set: measure_with_sextractor(green, param_set, program)


BACKENDS = {"sep": sep_backend, "sextractor": sextractor_backend}


def missing_row(param_set):
    """The row of an image without a measurement: no shift (x = y = 211.5), NaN elsewhere."""
    return [IMAGE_CENTRE if column in ("x", "y") else np.nan for column in param_set.columns]


def measure_image(task):
    """Worker: (galaxy_id, subset, backend name) -> list over PARAM_SETS of (row, failure), failure being
    None, 'no source' or the measurement error's message. Raises load_data.DataError for an unreadable image."""
    galaxy_id, subset, backend = task
    measure_set = BACKENDS[backend](load_data.load_image(galaxy_id, subset)[..., GREEN].astype(np.float64))
    results = []
    for param_set in PARAM_SETS:
        try:
            results.append((measure_set(param_set), None))
        except sextractor.ProgramFailed as exc:
            raise load_data.DataError(f"GalaxyID {galaxy_id}: {exc}") from None
        except NoSourceFound:
            results.append((missing_row(param_set), "no source"))
        except Exception as exc:
            if type(exc) is not Exception:  # sep reports its failures as bare Exceptions; anything else is a bug
                raise
            results.append((missing_row(param_set), f"GalaxyID {galaxy_id}: {exc}"))
    return results


# ---------------------------------------------------------------------------------------------------
# Driver


def init_worker(root):
    """Pool initialiser: the workers read from the same root as the parent and leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    load_data.set_root(root)


def partial_path(subset):
    """data/pysex_params_<subset>.partial.npz: the images of an unfinished run measured so far."""
    return load_data.data_dir() / f"pysex_params_{subset}.partial.npz"


def save_partial(subset, backend, galaxy_ids, results):
    """Keep the results of the first len(results) of galaxy_ids, for a rerun to continue from."""
    done = np.asarray(galaxy_ids[:len(results)], dtype=np.int64)
    with load_data.atomic_path(partial_path(subset)) as tmp, open(tmp, "wb") as file:
        np.savez(file, galaxy_ids=done, backend=backend, results=json.dumps(results), images=images_stamp(subset, done))


def images_stamp(subset, galaxy_ids):
    """A digest of the size and modification time of the image file of each of galaxy_ids: the images measured, as a
    partial file records them (when one has changed since, the run starts over)."""
    folder = load_data.raw_images_dir(subset)
    stats = (os.stat(folder / f"{galaxy_id}.jpg") for galaxy_id in galaxy_ids)
    return load_data.ids_stamp([value for stat in stats for value in (stat.st_size, stat.st_mtime_ns)])["digest"]


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
    tasks = [(int(galaxy_id), subset, backend) for galaxy_id in ids[len(results):]]
    start = time.time()
    progress = dict(total=len(ids), initial=len(results), desc=f"{backend} {subset}", unit="img")
    last_save = time.time()
    try:
        with parallel.process_pool(max(workers, 1), initializer=init_worker, initargs=(load_data.root(),)) as pool:
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
    parser.add_argument("--subsets", nargs="+", choices=load_data.SUBSETS, default=list(load_data.SUBSETS))
    parser.add_argument("--workers", type=int, default=min(DEFAULT_WORKERS, os.cpu_count() or 1),
                        help="worker processes (default: 8, capped by the number of cores)")
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
    load_data.check_free_space(load_data.data_dir(), num_images * per_image, f"the parameters of {num_images} images")


def extract_and_save(subsets, workers, limit, backend):
    """Measure every image of `subsets`, print the summaries and write the parameter files."""
    if backend == "sextractor":
        print(f"backend: {sextractor.version(sextractor.find_program())}")
    check_room(subsets, limit)
    for subset in subsets:
        arrays, failures, seconds = extract_subset(subset, workers, limit, backend)
        count = len(next(iter(arrays.values())))
        print(f"{subset}: {count} images in {load_data.hms(seconds)} "
              f"({1000 * seconds / max(count, 1):.1f} ms per image, {workers} workers)")
        print("  centre shift: distance of (x, y) from (211.5, 211.5), the shift the centring applies\n"
              "  0-based offset: distance of the galaxy from the image centre\n"
              "  a, b, flux_radius, fwhm in px; petro_radius, kron_radius in units of the ellipse")
        for param_set in PARAM_SETS:
            path = target_path(param_set, subset)
            load_data.save_gz(path, arrays[param_set.name], f"extract_pysex_params.py --backend {backend}",
                              **source_params.record_inputs(subset, load_data.load_ids(subset)[:count]))
            print("\n".join(summary_lines(param_set, arrays[param_set.name], failures[param_set.name])))
            print(f"  saved {path}")
        partial_path(subset).unlink(missing_ok=True)


def main(argv=None):
    try:
        return load_data.run_script(
            argument_parser(), lambda args: extract_and_save(args.subsets, args.workers, args.limit, args.backend),
            argv)
    except KeyboardInterrupt:
        print("\nstopped; the images measured so far are kept in data/pysex_params_<subset>.partial.npz, and the "
              "same command continues from there", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
