"""The data layer: create_train_ids.py, create_solutions_train.py, copy_data_to_shm.py and load_data.py on
tiny data roots built in tmp_path (random-noise JPEGs, labels valid by construction), every kind of bad
input they must reject with a clear message, and the real sample (skipped when absent)."""
import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import copy_data_to_shm
import create_solutions_train
import create_train_ids
from galaxyzoo import decision_tree
import load_data
from helpers import IMAGE_PROBLEMS, PROJECT_DIR, DiskUsage, corrupt_image, noise_jpeg_bytes, tree_valid_labels
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import errors

TRAIN_IDS = (100023, 100008, 999967, 100090, 5000)  # deliberately unsorted, of different lengths
TEST_IDS = (100018, 100001, 200)
pytestmark = pytest.mark.usefixtures("isolated")  # away from /dev/shm, $GALAXY_ROOT and an earlier test's root


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def label_rows(galaxy_ids, labels):
    """CSV rows [GalaxyID, 37 values as text] for the given IDs and (N, 37) labels."""
    return [[str(g)] + [repr(float(v)) for v in row] for g, row in zip(galaxy_ids, labels)]


@pytest.fixture
def raw_root(tmp_path):
    """A tiny project root as downloaded, before the data scripts ran: under data/raw, JPEGs for TRAIN_IDS and
    TEST_IDS and a valid CSV for TRAIN_IDS (rows in the order of TRAIN_IDS, not sorted). Returns
    (root, {GalaxyID: labels (37,)})."""
    root = tmp_path / "root"
    for subset, ids in (("train", TRAIN_IDS), ("test", TEST_IDS)):
        folder = root / "data" / "raw" / paths.RAW_IMAGE_FOLDERS[subset]
        folder.mkdir(parents=True)
        for galaxy_id in ids:
            (folder / f"{galaxy_id}.jpg").write_bytes(noise_jpeg_bytes(galaxy_id))
    labels = tree_valid_labels(len(TRAIN_IDS), np.random.default_rng(1))
    write_csv(root / "data" / "raw" / paths.SOLUTIONS_CSV, decision_tree.CSV_HEADER,
              label_rows(TRAIN_IDS, labels))
    return root, dict(zip(TRAIN_IDS, labels))


def run_main(script, root, capsys, *options):
    """Run a script's main() on `root`; returns (exit status, stdout, stderr)."""
    status = script.main(["--root", str(root), *options])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def pil_decode(path):
    """The reference decode: PIL straight to float32 in [0, 1]."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(np.float32) / 255.0


def leftovers(folder):
    """Files in `folder` (recursively) that an atomic write would have left behind."""
    return [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------------
# Good input


def test_ids_are_sorted_and_match_the_folders(raw_root, capsys):
    root, _ = raw_root
    status, out, _ = run_main(create_train_ids, root, capsys)
    assert status == 0 and "train_ids.npy" in out
    for subset, ids in (("train", TRAIN_IDS), ("test", TEST_IDS)):
        written = np.load(root / "data" / f"{subset}_ids.npy")
        assert written.dtype == np.int64
        assert written.tolist() == sorted(ids)
        assert load_data.load_ids(subset).tolist() == sorted(ids)


def test_labels_round_trip_in_train_id_order(raw_root, capsys):
    root, labels_by_id = raw_root
    assert run_main(create_train_ids, root, capsys)[0] == 0
    status, out, err = run_main(create_solutions_train, root, capsys)
    assert status == 0, err
    solutions = load_data.load_solutions()
    assert solutions.dtype == np.float32 and solutions.shape == (len(TRAIN_IDS), 37)
    expected = np.array([labels_by_id[g] for g in sorted(TRAIN_IDS)], dtype=np.float32)
    np.testing.assert_array_equal(solutions, expected)


def test_load_image_from_raw_ram_copy_and_cache_agree_with_pil(raw_root, capsys, monkeypatch):
    root, _ = raw_root
    assert run_main(create_train_ids, root, capsys)[0] == 0
    galaxy_id = TRAIN_IDS[0]
    raw_file = paths.raw_images_dir("train") / f"{galaxy_id}.jpg"
    reference = pil_decode(raw_file)

    from_raw = load_data.load_image(galaxy_id, "train")
    assert from_raw.dtype == np.float32 and from_raw.shape == (424, 424, 3)
    assert 0.0 <= from_raw.min() and from_raw.max() <= 1.0
    np.testing.assert_array_equal(from_raw, reference)

    assert run_main(copy_data_to_shm, root, capsys)[0] == 0
    assert load_data.image_path(galaxy_id, "train").parent == paths.ram_images_dir("train")
    np.testing.assert_array_equal(load_data.load_image(galaxy_id, "train"), reference)

    status, out, _ = run_main(copy_data_to_shm, root, capsys, "--cache", "--workers", "1")
    assert status == 0 and f"{len(TRAIN_IDS)} already there" in out
    with monkeypatch.context() as patched:
        patched.setattr(load_data, "decode_jpeg", None)  # inside, only the cache can give the image
        np.testing.assert_array_equal(load_data.load_image(galaxy_id, "train"), reference)
    cache = np.load(paths.cache_path("train"), mmap_mode="r")
    assert cache.dtype == np.uint8 and cache.shape == (len(TRAIN_IDS), 424, 424, 3)
    for row, other_id in enumerate(sorted(TEST_IDS)):
        test_file = paths.ram_images_dir("test") / f"{other_id}.jpg"
        np.testing.assert_array_equal(load_data.load_image(other_id, "test"), pil_decode(test_file))
        assert load_data.ImageCache("test")[other_id].tolist() == np.asarray(Image.open(test_file)).tolist()
    assert leftovers(paths.ram_dir()) == []


def test_cache_with_worker_processes_equals_in_process_cache(raw_root, capsys):
    root, _ = raw_root
    assert run_main(create_train_ids, root, capsys)[0] == 0
    assert run_main(copy_data_to_shm, root, capsys, "--subsets", "test", "--cache", "--workers", "1")[0] == 0
    single = np.load(paths.cache_path("test")).copy()
    assert run_main(copy_data_to_shm, root, capsys, "--subsets", "test", "--cache", "--workers", "2")[0] == 0
    np.testing.assert_array_equal(np.load(paths.cache_path("test")), single)
    assert not paths.cache_path("train").exists()


def test_save_gz_load_gz_round_trip(tmp_path):
    array = np.random.default_rng(0).random((7, 37)).astype(np.float32)
    path = tmp_path / "sub" / "predictions.npy.gz"
    records.save_gz(path, array)
    loaded = records.load_gz(path)
    assert loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)


def test_atomic_path_leaves_nothing_on_exception(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_bytes(b"half written")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


# ---------------------------------------------------------------------------------------------------
# Bad images


@pytest.mark.parametrize("folder_state", ["missing", "empty", "bad name", "leading zero"])
def test_bad_image_folder_is_rejected(raw_root, capsys, folder_state):
    root, _ = raw_root
    folder = root / "data" / "raw" / paths.RAW_IMAGE_FOLDERS["test"]
    for jpeg in folder.iterdir():
        jpeg.unlink()
    expected = {"missing": "image folder missing", "empty": "no images", "bad name": "notes.txt",
                "leading zero": "0200.jpg"}[folder_state]
    if folder_state == "missing":
        folder.rmdir()
    elif folder_state != "empty":
        (folder / expected).write_bytes(noise_jpeg_bytes(0))
    status, _, err = run_main(create_train_ids, root, capsys)
    assert status == 1 and err.startswith("error: ") and expected in err and str(folder) in err
    assert not (root / "data" / "train_ids.npy").exists() and not (root / "data" / "test_ids.npy").exists()


@pytest.mark.parametrize("problem", IMAGE_PROBLEMS)
def test_bad_image_is_named_and_no_cache_is_left(raw_root, capsys, problem):
    root, _ = raw_root
    assert run_main(create_train_ids, root, capsys)[0] == 0
    bad_id = TEST_IDS[1]
    expected = corrupt_image(paths.raw_images_dir("test"), bad_id, problem)
    workers = "2" if problem == "truncated" else "1"  # one case raises inside a worker process
    status, _, err = run_main(copy_data_to_shm, root, capsys, "--subsets", "test", "--cache", "--workers", workers)
    assert status == 1 and err.startswith("error: ")
    assert expected in err and f"{bad_id}.jpg" in err and f"GalaxyID {bad_id}" in err
    assert not paths.cache_path("test").exists() and leftovers(paths.ram_dir()) == []
    with pytest.raises(errors.DataError, match=f"GalaxyID {bad_id}"):
        load_data.load_image(bad_id, "test")


def test_missing_ram_disk_is_reported(raw_root, capsys, tmp_path, monkeypatch):
    root, _ = raw_root
    monkeypatch.setenv("GALAXY_RAM_DIR", str(tmp_path / "no-such-disk" / "galaxy"))
    status, _, err = run_main(copy_data_to_shm, root, capsys)
    assert status == 1 and "no-such-disk" in err and "does not exist" in err
    assert not (tmp_path / "no-such-disk").exists()


def test_cache_larger_than_free_space_is_refused(raw_root, capsys, monkeypatch):
    root, _ = raw_root
    assert run_main(create_train_ids, root, capsys)[0] == 0
    monkeypatch.setattr(copy_data_to_shm.shutil, "disk_usage", lambda path: DiskUsage(free=10**6))
    status, _, err = run_main(copy_data_to_shm, root, capsys, "--subsets", "test", "--cache")
    assert status == 1 and "nothing was written" in err and "only 1.0 MB is free" in err and "cache 1.6 MB" in err
    assert not paths.cache_path("test").exists() and not paths.ram_images_dir("test").exists()


def test_space_is_checked_for_every_subset_before_anything_is_written(raw_root, capsys, monkeypatch):
    """Room for the JPEGs of both subsets but not for their caches too: refused up front, no image copied."""
    root, _ = raw_root
    assert run_main(create_train_ids, root, capsys)[0] == 0
    paths.set_root(root)
    jpegs = sum(copy_data_to_shm.bytes_to_write(subset, False)[0] for subset in paths.SUBSETS)
    monkeypatch.setattr(copy_data_to_shm.shutil, "disk_usage", lambda path: DiskUsage(free=jpegs + 1000))
    status, _, err = run_main(copy_data_to_shm, root, capsys, "--cache")
    assert status == 1 and "train: JPEGs" in err and "test: JPEGs" in err
    assert not any(paths.ram_images_dir(subset).exists() for subset in paths.SUBSETS)
    assert run_main(copy_data_to_shm, root, capsys)[0] == 0  # without --cache it fits


# ---------------------------------------------------------------------------------------------------
# Bad labels


def rewrite_csv(root, labels_by_id, problem):
    """Rewrite the CSV with one problem; returns the texts the error message must contain."""
    header = list(decision_tree.CSV_HEADER)
    ids = list(labels_by_id)
    rows = label_rows(ids, np.array([labels_by_id[g] for g in ids]))
    if problem == "missing column":
        index = header.index("Class3.1")
        header, rows = header[:index] + header[index + 1:], [r[:index] + r[index + 1:] for r in rows]
        expected = ["missing column", "Class3.1"]
    elif problem == "renamed column":
        header[header.index("Class7.2")] = "Class7.two"
        expected = ["renamed", "Class7.two", "Class7.2"]
    elif problem == "reordered columns":
        a, b = header.index("Class9.1"), header.index("Class9.2")
        header[a], header[b] = header[b], header[a]
        expected = ["out of order", "column 27", "Class9.2", "Class9.1"]
    elif problem == "nan":
        rows[2][header.index("Class5.3")] = "nan"
        expected = ["line 4", f"GalaxyID {ids[2]}", "Class5.3", "NaN"]
    elif problem == "outside [0, 1]":
        rows[1][header.index("Class11.6")] = "1.5"
        expected = ["line 3", f"GalaxyID {ids[1]}", "Class11.6", "1.5", "outside [0, 1]"]
    elif problem.startswith("extra field"):  # before, in the first data row: line 3 blamed, a label shown as the ID
        row = 0 if problem.endswith("first row") else 3
        rows[row].append("0.5")
        expected = [f"line {row + 2} (GalaxyID '{ids[row]}') has 39 fields, the header 38"]
    elif problem == "duplicate id":
        rows.append(list(rows[0]))
        expected = ["duplicate GalaxyID", f"GalaxyID {ids[0]} on lines 2, {len(rows) + 1}"]
    elif problem == "id without image":
        rows.append(["4242"] + rows[0][1:])
        expected = ["GalaxyID 4242", "4242.jpg", "without a training image"]
    elif problem == "image without label":
        rows = rows[1:]
        expected = [f"GalaxyID {ids[0]}", "without a label row"]
    else:  # a decision-tree sum broken in question 4 of the last row
        rows[-1][header.index("Class4.2")] = repr(float(rows[-1][header.index("Class4.2")]) / 2 + 1e-3)
        expected = [f"GalaxyID {ids[-1]}", "question 4", "expected", "Class2.2"]
    write_csv(root / "data" / "raw" / paths.SOLUTIONS_CSV, header, rows)
    return expected


CSV_PROBLEMS = ["missing column", "renamed column", "reordered columns", "nan", "outside [0, 1]",
                "extra field in the first row", "extra field in a later row", "duplicate id",
                "id without image", "image without label", "tree sum"]


@pytest.mark.parametrize("problem", CSV_PROBLEMS)
def test_bad_csv_is_named_and_nothing_is_written(raw_root, capsys, problem):
    root, labels_by_id = raw_root
    assert run_main(create_train_ids, root, capsys)[0] == 0
    expected = rewrite_csv(root, labels_by_id, problem)
    status, _, err = run_main(create_solutions_train, root, capsys)
    assert status == 1 and err.startswith("error: ") and paths.SOLUTIONS_CSV in err
    for text in expected:
        assert text in err
    assert not paths.solutions_train_path().exists() and leftovers(root / "data") == []


def test_blank_lines_are_skipped_and_counted_in_line_numbers(raw_root, capsys):
    root, labels_by_id = raw_root
    assert run_main(create_train_ids, root, capsys)[0] == 0
    csv_path = root / "data" / "raw" / paths.SOLUTIONS_CSV
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(lines[:2] + ["\n"] + lines[2:] + ["\n"]))
    assert run_main(create_solutions_train, root, capsys)[0] == 0
    expected = rewrite_csv(root, labels_by_id, "nan")  # the NaN sits on line 4 of the file without blank lines
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(lines[:2] + ["\n"] + lines[2:]))
    status, _, err = run_main(create_solutions_train, root, capsys)
    assert status == 1 and expected[0] == "line 4" and "line 5" in err and "line 4" not in err


def test_labels_before_ids_says_which_script_to_run(raw_root, capsys):
    root, _ = raw_root
    status, _, err = run_main(create_solutions_train, root, capsys)
    assert status == 1 and "train_ids.npy" in err and "create_train_ids.py" in err


@pytest.mark.slow
def test_script_exits_1_with_a_one_line_error(raw_root):
    root, labels_by_id = raw_root
    subprocess.run([sys.executable, "create_train_ids.py", "--root", str(root)], cwd=PROJECT_DIR, check=True,
                   capture_output=True)
    rewrite_csv(root, labels_by_id, "nan")
    result = subprocess.run([sys.executable, "create_solutions_train.py", "--root", str(root)], cwd=PROJECT_DIR,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (root / "data" / "solutions_train.npy").exists()


# ---------------------------------------------------------------------------------------------------
# The real sample


def test_real_sample_ids_and_labels(real_sample, tmp_path, capsys):
    root = tmp_path / "real"
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for subset in paths.SUBSETS:
        folder = paths.RAW_IMAGE_FOLDERS[subset]
        (raw / folder).symlink_to(real_sample / folder, target_is_directory=True)
    (raw / paths.SOLUTIONS_CSV).symlink_to(real_sample / "training_solutions_rev1_sample.csv")
    assert run_main(create_train_ids, root, capsys)[0] == 0
    status, _, err = run_main(create_solutions_train, root, capsys)
    assert status == 0, err

    train_ids, test_ids = load_data.load_ids("train"), load_data.load_ids("test")
    assert len(train_ids) == 351 and len(test_ids) == 200
    assert np.isin(train_ids, np.load(real_sample / "train_ids.npy")).all()
    assert np.isin(test_ids, np.load(real_sample / "test_ids.npy")).all()
    with open(real_sample / "training_solutions_rev1_sample.csv") as f:
        rows = {int(r[0]): [float(v) for v in r[1:]] for r in list(csv.reader(f))[1:]}
    expected = np.array([rows[g] for g in train_ids], dtype=np.float32)
    np.testing.assert_array_equal(load_data.load_solutions(), expected)


@pytest.mark.slow
def test_decoder_gives_pil_pixels_on_the_real_sample(real_sample):
    """load_data.decode_jpeg (libjpeg-turbo via simplejpeg) returns exactly what PIL decodes."""
    paths = sorted((real_sample / "images_train_rev1").glob("*.jpg")) + sorted(
        (real_sample / "images_test_rev1").glob("*.jpg"))
    assert len(paths) > 500
    for path in paths:
        with Image.open(path) as img:
            expected = np.asarray(img.convert("RGB"))
        np.testing.assert_array_equal(load_data.decode_jpeg(path), expected, err_msg=str(path))


def test_a_second_copy_is_refused_and_stale_temporaries_are_removed(raw_root, capsys):
    """While another copy_data_to_shm.py holds the RAM folder's lock, a run is refused; the next one removes the
    temporaries that a killed run left (a decoded cache's is the size of the cache) and builds the cache."""
    root, _ = raw_root
    assert run_main(create_train_ids, root, capsys)[0] == 0
    paths.set_root(root)
    with files.take_lock(paths.ram_dir() / "copy.lock", [], "held by the test"):
        status, _, err = run_main(copy_data_to_shm, root, capsys, "--cache", "--workers", "1")
        assert status == 1 and "another copy_data_to_shm.py is writing here" in err
    stale = [paths.ram_dir() / f".{paths.cache_path('train').name}.k1ll3d.tmp",
             paths.ram_images_dir("test") / f".{TEST_IDS[0]}.jpg.k1ll3d.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 1000)
    status, out, _ = run_main(copy_data_to_shm, root, capsys, "--cache", "--workers", "1")
    assert status == 0 and not any(path.exists() for path in stale) and out.count("removing") == 2
    assert paths.cache_path("train").exists()
