"""extract_pysex_params.py: the measurements on synthetic galaxies with known profiles, and a run of the
script on real images (skipped when the real sample is absent)."""
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import brentq

import extract_pysex_params as extract
import load_data
from galaxyzoo import source_params
from helpers import PROJECT_DIR, make_tiny_root
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import source_extraction

SIZE = load_data.IMAGE_SIZE
PARAM_SETS = {param_set.name: param_set for param_set in source_params.PARAM_SETS}
NUM_REAL_IMAGES = 60  # labelled real images measured by the script test (about 5 s on 2 cores)
BLANK_ID = 1  # a black image added to them; smaller than every real GalaxyID, so its row comes first


def synthetic_galaxy(profile, centre, axis_ratio=1.0, angle=0.0, noise=0.01, seed=0):
    """A (424, 424) float64 image: a sky level plus profile(r) of the elliptical radius r (along the major
    axis, which points at `angle` radians from the column axis towards the row axis) around `centre`
    (0-based column, row), plus Gaussian noise."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    dx, dy = cols - centre[0], rows - centre[1]
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    radius = np.hypot(along, across / axis_ratio)
    return 0.05 + profile(radius) + np.random.default_rng(seed).normal(0.0, noise, (SIZE, SIZE))


def measure(image, set_name):
    """{column: value} of one parameter set for an image (H, W) float64."""
    param_set = PARAM_SETS[set_name]
    return dict(zip(param_set.columns, source_extraction.measure(*source_extraction.prepare(image), param_set)))


# ---------------------------------------------------------------------------------------------------
# Synthetic galaxies


def test_gaussian_position_angle_and_fwhm():
    sigma, centre, angle = 6.0, (214.5, 209.5), 0.5
    values = measure(synthetic_galaxy(lambda r: 0.8 * np.exp(-r ** 2 / (2 * sigma ** 2)), centre,
                                      axis_ratio=0.6, angle=angle), "extra")
    # Stored coordinates are SExtractor's 1-based ones: x counts columns, y rows.
    assert values["x"] == pytest.approx(centre[0] + 1, abs=0.1)
    assert values["y"] == pytest.approx(centre[1] + 1, abs=0.1)
    assert values["theta"] == pytest.approx(np.degrees(angle), abs=1.0)
    assert values["b"] / values["a"] == pytest.approx(0.6, abs=0.05)
    # A round Gaussian has FWHM 2.3548 sigma; SExtractor then subtracts 1 / (4 FWHM).
    round_values = measure(synthetic_galaxy(lambda r: 0.8 * np.exp(-r ** 2 / (2 * sigma ** 2)), centre), "extra")
    true_fwhm = 2 * np.sqrt(2 * np.log(2)) * sigma
    assert round_values["fwhm"] == pytest.approx(true_fwhm - 1 / (4 * true_fwhm), rel=0.02)


def test_theta_range_covers_both_diagonals():
    """theta is stored in [0, 180]: a major axis at -30 degrees reads 150."""
    values = measure(synthetic_galaxy(lambda r: 0.8 * np.exp(-r / 8.0), (211.5, 211.5), axis_ratio=0.5,
                                      angle=np.radians(-30.0)), "gen2")
    assert values["theta"] == pytest.approx(150.0, abs=1.5)


@pytest.mark.parametrize("set_name", ["gen2", "extra"])
def test_exponential_disc_petrosian_radius(set_name):
    """For I = exp(-r / h) the Petrosian radius (surface brightness 0.2 times the mean inside) is x_p h with
    exp(-x) x^2 / (2 (1 - exp(-x) (1 + x))) = 0.2. petro_radius / 2 * a estimates it on SExtractor's grid
    of elliptical radii, which overshoots by at most one step (0.3 * 1.1 in units of a)."""
    scale = 12.0
    x_p = brentq(lambda x: np.exp(-x) * x * x / (2 * (1 - np.exp(-x) * (1 + x))) - 0.2, 0.5, 10.0)
    values = measure(synthetic_galaxy(lambda r: 0.8 * np.exp(-r / scale), (211.5, 211.5), axis_ratio=0.7,
                                      angle=1.0), set_name)
    petrosian_px = values["petro_radius"] / 2 * values["a"]
    assert x_p * scale - 1.0 <= petrosian_px <= x_p * scale + 0.33 * values["a"] + 1.0


def test_kron_and_flux_radius_of_exponential_disc():
    """The Kron first moment of exp(-r / h) is 2 h untruncated (a little less inside 6 a); FLUX_RADIUS is
    below the true half-light radius 1.678 h because FLUX_AUTO misses the light outside the Kron ellipse."""
    scale = 12.0
    values = measure(synthetic_galaxy(lambda r: 0.8 * np.exp(-r / scale), (211.5, 211.5)), "extra")
    first_moment_px = values["kron_radius"] / source_extraction.AUTO_PARAMS[0] * values["a"]
    assert 1.6 * scale < first_moment_px <= 2.0 * scale
    assert 1.3 * scale < values["flux_radius"] < 1.678 * scale


def test_most_salient_prefers_a_large_central_galaxy():
    """A big galaxy 20 px from the centre beats a small one at the centre and a bigger one far away."""
    big = synthetic_galaxy(lambda r: 0.6 * np.exp(-r / 10.0), (231.5, 211.5))
    small_central = synthetic_galaxy(lambda r: 0.6 * np.exp(-r / 2.0), (211.5, 211.5), noise=0.0)
    far = synthetic_galaxy(lambda r: 0.6 * np.exp(-r / 14.0), (60.0, 60.0), noise=0.0)
    values = measure(big + small_central + far - 0.1, "extra")
    assert values["x"] == pytest.approx(232.5, abs=1.5)
    assert values["y"] == pytest.approx(212.5, abs=1.5)


def test_blank_image_has_no_source():
    with pytest.raises(source_extraction.NoSourceFound):
        measure(np.zeros((SIZE, SIZE)), "gen2")
    row = source_extraction.missing_row(PARAM_SETS["extra"])
    assert row[:2] == [source_extraction.IMAGE_CENTRE, source_extraction.IMAGE_CENTRE]
    assert np.isnan(row[2:]).all()


# ---------------------------------------------------------------------------------------------------
# The script on real images


def make_linked_root(root, image_paths, blank_id):
    """A project root whose data/raw/images_train_rev1 holds symlinks to image_paths (never copies) plus a
    black JPEG named blank_id, and whose data/train_ids.npy lists them. Returns (root, sorted ids)."""
    images = root / "data" / "raw" / "images_train_rev1"
    images.mkdir(parents=True)
    ids = [int(path.stem) for path in image_paths]
    for path in image_paths:
        (images / path.name).symlink_to(path)
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(images / f"{blank_id}.jpg")
    ids.append(blank_id)
    ids = np.array(sorted(ids), dtype=np.int64)
    np.save(root / "data" / "train_ids.npy", ids)
    return root, ids


@pytest.fixture(scope="module")
def real_run(real_sample, tmp_path_factory):
    """The script run (2 workers) on the first NUM_REAL_IMAGES labelled real images plus one black image.
    Returns (root, ids, {set name: array})."""
    image_files = sorted((real_sample / "images_train_rev1").glob("*.jpg"), key=lambda path: int(path.stem))[:NUM_REAL_IMAGES]
    root, ids = make_linked_root(tmp_path_factory.mktemp("sep_root"), image_files, blank_id=BLANK_ID)
    try:
        assert extract.main(["--root", str(root), "--subsets", "train", "--workers", "2"]) == 0
        arrays = {name: records.load_gz(source_params.target_path(param_set, "train"))
                  for name, param_set in PARAM_SETS.items()}
    finally:
        paths.set_root(None)
    return root, ids, arrays


def columns(array, set_name):
    return {name: array[:, k] for k, name in enumerate(PARAM_SETS[set_name].columns)}


def test_real_output_shapes_and_blank_row(real_run):
    _, ids, arrays = real_run
    assert ids[0] == BLANK_ID
    for name, param_set in PARAM_SETS.items():
        array = arrays[name]
        assert array.shape == (NUM_REAL_IMAGES + 1, len(param_set.columns))
        assert array.dtype == np.float64
        np.testing.assert_array_equal(array[0], source_extraction.missing_row(param_set))
        assert np.isfinite(array[1:]).all()


def test_real_rows_follow_id_order(real_run, isolated):
    """Rows written by the parallel run equal a direct measurement of the image with that ID."""
    root, ids, arrays = real_run
    paths.set_root(root)
    for index in (1, len(ids) // 2, len(ids) - 1):
        direct = source_extraction.measure_image((int(ids[index]), "train", "sep", paths.current()))
        for (row, _), param_set in zip(direct, source_params.PARAM_SETS):
            np.testing.assert_array_equal(arrays[param_set.name][index], row)


@pytest.mark.parametrize("set_name", ["gen2", "extra"])
def test_real_galaxies_are_found_near_the_centre(real_run, set_name):
    """Measured on all 1,351 real training images: 93% (gen2) and 95% (extra) lie within 10 px of the
    image centre; on these 60, 90% and 95%. Distances use 0-based pixel centres ((x - 1, y - 1))."""
    values = columns(real_run[2][set_name][1:], set_name)
    distance = np.hypot(values["x"] - 1 - source_extraction.IMAGE_CENTRE, values["y"] - 1 - source_extraction.IMAGE_CENTRE)
    assert np.mean(distance <= 10.0) >= 0.85


@pytest.mark.parametrize("set_name", ["gen2", "extra"])
def test_real_radii_are_plausible(real_run, set_name):
    """Bounds: the semi-axes of real galaxies (10-70 px measured) fit well inside the image; the aperture
    factors obey SExtractor's minimum 3.5 and the Petrosian scan's maximum 2 * 1.1 * 4.8."""
    values = columns(real_run[2][set_name][1:], set_name)
    assert (values["a"] > 5).all() and (values["a"] < SIZE / 2).all()
    assert (values["b"] > 0).all() and (values["b"] <= values["a"]).all()
    assert ((values["theta"] >= 0) & (values["theta"] <= 180)).all()
    assert (values["petro_radius"] >= source_extraction.PETRO_PARAMS[1]).all()
    assert (values["petro_radius"] <= source_extraction.PETRO_PARAMS[0] * 1.1 * 4.8 * (1 + 1e-6)).all()  # single precision
    if set_name == "extra":
        assert (values["kron_radius"] >= source_extraction.AUTO_PARAMS[1]).all()
        assert (values["flux_radius"] > 0).all()
        assert (values["flux_radius"] <= source_extraction.ANALYSIS_RADIUS * values["a"]).all()
        assert (values["fwhm"] > 0).all()
        assert (values["fwhm"] <= 1.6651 * np.sqrt(13 * values["a"] * values["b"])).all()


def test_unreadable_image_is_a_clear_error(isolated, capsys):
    """A corrupt JPEG stops the run (through the worker pool) with a message naming file and ID."""
    images = isolated / "data" / "raw" / "images_train_rev1"
    images.mkdir(parents=True)
    (images / "7.jpg").write_bytes(b"not a jpeg")
    np.save(isolated / "data" / "train_ids.npy", np.array([7], dtype=np.int64))
    assert extract.main(["--root", str(isolated), "--workers", "2", "--subsets", "train"]) == 1
    error = capsys.readouterr().err
    assert "error:" in error and "7.jpg" in error and "GalaxyID 7" in error
    assert not list((isolated / "data").glob("pysex_params_*"))


def test_schema_names_the_files_extraction_writes(isolated):
    """demo.py skips step 3 when source_params.all_paths() exist: they must be exactly the files a run of the
    script writes (here on one black image per subset)."""
    paths.set_root(isolated)
    for subset in paths.SUBSETS:
        images = paths.raw_images_dir(subset)
        images.mkdir(parents=True)
        Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(images / f"{BLANK_ID}.jpg")
        np.save(paths.ids_path(subset), np.array([BLANK_ID], dtype=np.int64))
    assert extract.main(["--root", str(isolated), "--workers", "1"]) == 0
    looked_for = source_params.all_paths()
    written = set((isolated / "data").glob("pysex_params_*"))
    assert written == set(looked_for) | {records.record_path(path) for path in looked_for} and len(looked_for) == 4


# ---------------------------------------------------------------------------------------------------
# Interrupted runs continue where they stopped


def test_run_stopped_by_an_error_continues_from_the_images_measured(isolated, capsys):
    """A broken image stops the run; once it is replaced, the rerun measures only the images after those
    already measured (the whole chunks of tasks before the broken one), and the files equal those of an
    uninterrupted run."""
    make_tiny_root(isolated, num_train=12, num_test=1)
    assert extract.main(["--root", str(isolated), "--workers", "2", "--subsets", "train"]) == 0
    clean = {p.name: records.load_gz(source_params.target_path(p, "train")) for p in source_params.PARAM_SETS}
    ids = load_data.load_ids("train")
    broken = load_data.image_path(ids[8], "train")
    good_bytes = broken.read_bytes()
    broken.write_bytes(b"not a jpeg")
    assert extract.main(["--root", str(isolated), "--workers", "1", "--subsets", "train"]) == 1
    with np.load(extract.partial_path("train")) as saved:
        kept = len(saved["galaxy_ids"])
        assert 0 < kept <= 8
        np.testing.assert_array_equal(saved["galaxy_ids"], ids[:kept])
    capsys.readouterr()
    broken.write_bytes(good_bytes)
    assert extract.main(["--root", str(isolated), "--workers", "2", "--subsets", "train"]) == 0
    assert f"continuing after the {kept} images" in capsys.readouterr().out
    assert not extract.partial_path("train").exists()
    for param_set in source_params.PARAM_SETS:
        np.testing.assert_array_equal(records.load_gz(source_params.target_path(param_set, "train")),
                                      clean[param_set.name])


def test_partial_results_of_another_backend_are_not_used(isolated, capsys):
    make_tiny_root(isolated, num_train=3, num_test=1)
    paths.set_root(isolated)
    extract.save_partial("train", "sextractor", load_data.load_ids("train"), [[([1.0] * 6, None), ([1.0] * 9, None)]])
    assert extract.main(["--root", str(isolated), "--workers", "1", "--subsets", "train"]) == 0
    assert "made by another backend or for other images" in capsys.readouterr().out
    assert (records.load_gz(source_params.target_path(source_params.GEN2, "train"))[0] != 1.0).any()


@pytest.mark.slow
def test_ctrl_c_keeps_the_images_measured(isolated):
    """SIGINT during a run: exit status 130, one message and no traceback, the measured images kept."""
    make_tiny_root(isolated, num_train=400, num_test=1)
    process = subprocess.Popen([sys.executable, str(PROJECT_DIR / "extract_pysex_params.py"), "--root", str(isolated),
                                "--workers", "2", "--subsets", "train"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "same command continues" in err
    with np.load(isolated / "data" / "pysex_params_train.partial.npz") as saved:
        assert 0 < len(saved["galaxy_ids"]) < 400
