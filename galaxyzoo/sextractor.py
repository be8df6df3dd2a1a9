"""Run the SExtractor program on one image, configured as the original solution ran it, and read its catalogue.

The original called SExtractor through the pysex wrapper: the image written to a FITS file, SExtractor's
default configuration (`-d`) with the 3x3 "all-ground" convolution mask as the filter, and only the detection
threshold changed. This module does the same with the program of the `source-extractor` package (Debian,
Ubuntu; the upstream name of the program is `sex`). It is an optional backend of extract_pysex_params.py;
its `sep` backend needs no program.
"""
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from galaxyzoo import errors

PROGRAM_NAMES = ("source-extractor", "sex")
ALL_GROUND_FILTER = "CONV NORM\n1 2 1\n2 4 2\n1 2 1\n"  # SExtractor's default.conv


class ProgramFailed(Exception):
    """The program exited with an error."""


def find_program():
    """Path of the SExtractor program on the PATH, or DataError saying how to install it."""
    for name in PROGRAM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise errors.DataError(f"the sextractor backend needs the SExtractor program, and none of "
                              f"{', '.join(PROGRAM_NAMES)} is on the PATH (Debian or Ubuntu: apt-get install "
                              f"source-extractor); or use the default backend, sep")


def version(program):
    """The program's version line, e.g. 'Source Extractor version 2.25.0 (2018-02-08)'."""
    result = subprocess.run([program, "--version"], capture_output=True, text=True)
    return (result.stdout or result.stderr).strip().splitlines()[0]


@functools.lru_cache(maxsize=None)
def default_configuration(program):
    """The program's default configuration file (`-d`), read once per process."""
    return subprocess.run([program, "-d"], capture_output=True, text=True, check=True).stdout


def catalogue(image, detect_thresh, parameters, program):
    """SExtractor's catalogue of a (H, W) float image (numpy row r, column c is FITS pixel x = c + 1,
    y = r + 1), detected at detect_thresh sigmas: {parameter name: (N,) float64}, N detections."""
    with tempfile.TemporaryDirectory(prefix="sextractor-") as folder:
        folder = Path(folder)
        fits.PrimaryHDU(np.asarray(image, dtype=np.float32)).writeto(folder / "image.fits")
        (folder / "default.sex").write_text(default_configuration(program))
        (folder / "default.conv").write_text(ALL_GROUND_FILTER)
        (folder / "catalogue.param").write_text("\n".join(parameters) + "\n")
        command = [program, "image.fits", "-c", "default.sex", "-FILTER_NAME", "default.conv",
                   "-PARAMETERS_NAME", "catalogue.param", "-CATALOG_NAME", "catalogue.txt",
                   "-CATALOG_TYPE", "ASCII", "-DETECT_THRESH", str(detect_thresh),
                   "-CHECKIMAGE_TYPE", "NONE", "-VERBOSE_TYPE", "QUIET"]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if result.returncode != 0:
            raise ProgramFailed(f"{program} failed: {result.stderr.strip()[-500:]}")
        text = (folder / "catalogue.txt").read_text()
    rows = np.loadtxt(text.splitlines(), ndmin=2).reshape(-1, len(parameters)) if text.strip() else \
        np.empty((0, len(parameters)))
    return {name: rows[:, k] for k, name in enumerate(parameters)}
