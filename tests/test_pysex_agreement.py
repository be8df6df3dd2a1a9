"""Step 3 against the original's published source-extraction parameters.

On the real sample (skipped without it): both backends reproduce the published rows (the sample's
original_pysex_params_*.csv) for the sample's 1,551 images. Without it: files in the original's own format
are read as they are."""
import gzip
import io

import numpy as np
import pandas as pd
import pytest

import extract_pysex_params as extract
import load_data
from galaxyzoo import parallel
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import source_params
from galaxyzoo import sextractor
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import errors
from galaxyzoo import source_extraction

IMAGE_FOLDERS = {"train": ("images_train_rev1", "images_train_unlabelled"), "test": ("images_test_rev1",)}
REQUIRED_SHARE = 0.97  # centre within 1 px and Petrosian radius within 5%, per parameter set
OTHER_COLUMNS_SHARE = 0.98  # a, b, flux_radius, kron_radius, fwhm within 5%; theta within 1 degree
SEXTRACTOR_STRIDE = 4  # the program backend is measured on every 4th image (about 40 s on 2 cores)


def published(real_sample):
    """{set name: DataFrame of the published rows indexed by GalaxyID, with the image path of each}."""
    tables = {}
    for param_set in source_params.PARAM_SETS:
        parts = []
        for subset, folders in IMAGE_FOLDERS.items():
            part = pd.read_csv(real_sample / f"original_pysex_params_{param_set.name}_{subset}.csv")
            paths = {int(path.stem): path for folder in folders for path in (real_sample / folder).glob("*.jpg")}
            part["path"] = [paths[galaxy_id] for galaxy_id in part.GalaxyID]
            parts.append(part)
        tables[param_set.name] = pd.concat(parts).set_index("GalaxyID").sort_index()
    return tables


def measure_file(task):
    """Worker: (image path, backend name) -> list over PARAM_SETS of rows (missing_row when no source)."""
    path, backend = task
    measure_set = source_extraction.BACKENDS[backend](load_data.decode_jpeg(path)[..., source_extraction.GREEN] / 255.0)
    rows = []
    for param_set in source_params.PARAM_SETS:
        try:
            rows.append(measure_set(param_set))
        except source_extraction.NoSourceFound:
            rows.append(source_extraction.missing_row(param_set))
    return rows


def agreement(tables, backend, stride=1):
    """{set name: {criterion: share of images}} of a backend against the published rows."""
    paths = tables["gen2"].path.values[::stride]
    with parallel.process_pool(2) as pool:
        results = list(pool.map(measure_file, [(path, backend) for path in paths], chunksize=10))
    shares = {}
    for k, param_set in enumerate(source_params.PARAM_SETS):
        ours = pd.DataFrame([result[k] for result in results], columns=param_set.columns)
        theirs = tables[param_set.name].iloc[::stride][list(param_set.columns)].reset_index(drop=True)
        centre = np.hypot(ours.x - theirs.x, ours.y - theirs.y) < 1.0
        petro = np.abs(ours.petro_radius / theirs.petro_radius - 1) < 0.05
        share = {"centre and petro_radius": np.mean(centre & petro)}
        for column in set(param_set.columns) - {"x", "y", "petro_radius", "theta"}:
            share[column] = np.mean(np.abs(ours[column] / theirs[column] - 1) < 0.05)
        share["theta"] = np.mean(np.abs((ours.theta - theirs.theta + 90) % 180 - 90) < 1.0)
        print(f"{backend} {param_set.name} on {len(paths)} images: "
              + ", ".join(f"{name} {value:.4f}" for name, value in share.items()))
        shares[param_set.name] = share
    return shares


@pytest.mark.slow
def test_sep_backend_reproduces_the_published_parameters(real_sample):
    """All 1,551 sample images (about a minute on 2 cores)."""
    shares = agreement(published(real_sample), "sep")
    for param_set in source_params.PARAM_SETS:
        share = shares[param_set.name]
        assert share.pop("centre and petro_radius") >= REQUIRED_SHARE, param_set.name
        assert min(share.values()) >= OTHER_COLUMNS_SHARE, (param_set.name, share)


@pytest.mark.slow
def test_sextractor_backend_reproduces_the_published_parameters(real_sample):
    try:
        sextractor.find_program()
    except errors.DataError:
        pytest.skip("the SExtractor program is not installed (apt-get install source-extractor)")
    shares = agreement(published(real_sample), "sextractor", stride=SEXTRACTOR_STRIDE)
    for param_set in source_params.PARAM_SETS:
        share = shares[param_set.name]
        assert share.pop("centre and petro_radius") >= REQUIRED_SHARE, param_set.name
        assert min(share.values()) >= OTHER_COLUMNS_SHARE, (param_set.name, share)


def test_missing_program_is_a_clear_error(isolated, monkeypatch, capsys):
    """--backend sextractor without the program stops before any image is read, and says how to install it."""
    monkeypatch.setenv("PATH", str(isolated))
    assert extract.main(["--root", str(isolated), "--backend", "sextractor"]) == 1
    assert "apt-get install source-extractor" in capsys.readouterr().err


def write_original_format(path, array):
    """A .npy.gz file laid out as the original wrote its parameter files: np.save's version 1.0 format,
    gzipped by the gzip program (whose header names the temporary file it compressed)."""
    payload = io.BytesIO()
    np.lib.format.write_array(payload, array, version=(1, 0))
    with open(path, "wb") as file, gzip.GzipFile(filename=path.name + ".tmp.npy", mode="wb", fileobj=file) as packed:
        packed.write(payload.getvalue())


def test_original_parameter_files_are_read_as_they_are(isolated, monkeypatch):
    """Files in the original's format dropped into data/ are what training and prediction read: every column of
    every file, and the centring the pysex members apply. They have no record, and are read only for the IDs they
    were made for (here the IDs of this test stand for the competition's)."""
    paths.set_root(isolated)
    paths.data_dir().mkdir()
    rng = np.random.default_rng(0)
    ids = {"train": np.array([100008, 100023, 100053], dtype=np.int64),
           "test": np.array([100018, 100037], dtype=np.int64)}
    arrays = {}
    for subset, subset_ids in ids.items():
        np.save(paths.ids_path(subset), subset_ids)
        for param_set in source_params.PARAM_SETS:
            array = rng.uniform(5.0, 250.0, (len(subset_ids), len(param_set.columns)))
            write_original_format(source_params.target_path(param_set, subset), array)
            arrays[param_set.name, subset] = array
    with gzip.open(source_params.target_path(source_params.GEN2, "train"), "rb") as file:
        assert file.read(8) == b"\x93NUMPY\x01\x00"  # the layout the original's files have
    with pytest.raises(errors.DataError, match="no record of what it was made from.*competition's own train"):
        source_params.load_columns(source_params.GEN2, "train", ids["train"])
    monkeypatch.setattr(source_params, "KAGGLE_IDS", {subset: records.ids_stamp(subset_ids)
                                                      for subset, subset_ids in ids.items()})
    for (name, subset), array in arrays.items():
        param_set = next(p for p in source_params.PARAM_SETS if p.name == name)
        reversed_ids = ids[subset][::-1]
        columns = source_params.load_columns(param_set, subset, reversed_ids)
        for k, column in enumerate(param_set.columns):
            np.testing.assert_array_equal(columns[column], array[::-1, k])
    x, y = arrays["gen2", "train"][1, :2]
    matrices = ra.prepro_matrices("centre", ids["train"][1:2], "train")
    np.testing.assert_allclose(matrices[0], ra.centring_transform(x, y))


def test_the_competition_ids_are_those_of_the_real_data(real_sample):
    """source_params.KAGGLE_IDS, for which files without a record are read, are the stamps of the real ID lists."""
    for subset in paths.SUBSETS:
        assert records.ids_stamp(np.load(real_sample / f"{subset}_ids.npy")) == source_params.KAGGLE_IDS[subset]
