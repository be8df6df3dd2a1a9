"""Apply trained models to images of your own: JPEG or PNG files of any size, and write the 37 vote fractions and the
most-voted answer to each question along the decision tree, one CSV row per image.

    python classify_images.py my_galaxies/ --models try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense
    python classify_images.py a.jpg b.png --models A,B,C --out votes.csv
    python classify_images.py my_galaxies/ --models A,B --blend uniform --num-transforms 10

DIR_OR_FILES: folders (their .jpg, .jpeg and .png files, not those of sub-folders) and files. Each model is a
try_*.py name whose checkpoint is analysis/final/<name>.pt (or the path of its try script, for one outside the
project folder). The models were trained on the competition's images: SDSS colour composites, 424x424 pixels,
centred on the galaxy and scaled to its size (README, "Your own images"). Prepare yours the same way; this script
only takes the centred largest square of each image and resamples it to 424x424.

Each model averages its predictions over the test-time transforms that step 6 used for it (the record of its test
predictions; the original's 60 when it has none), or over those of --transform-set / --num-transforms. Several
models are blended with the weights blend_predictions.py fitted on the validation set (--blend per_model by
default; per_column, or uniform, the plain average that was submitted) when it blended exactly these models;
otherwise with the plain average, which is said. Models that centre or rescale their input measure each image's
galaxy with source extraction (sep), as step 3 does for the competition's images.

The CSV (default classifications.csv) has the columns: file, Class1.1 ... Class11.6 (the vote fractions, clipped to
[0, 1]), then one column per question with its most-voted answer, empty where the tree does not reach it. An image
that cannot be read is named and skipped (no row), and counted at the end. A run stopped by Ctrl-C keeps the images
done in <CSV>.partial.npz (also every minute); the same command continues after them, skipping the files unchanged
since, unless the models, transforms or weights changed.
"""
import argparse
import csv
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from galaxyzoo import backbones
import blend_predictions
from galaxyzoo import checkpoints
from galaxyzoo import decision_tree
import load_data
from galaxyzoo import precision
import predict_augmented_npy
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import source_params
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors
from galaxyzoo import source_extraction

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_FORMATS = ("JPEG", "PNG")
IMAGES_PER_CHUNK = 16  # images read, warped and predicted together
PARTIAL_SAVE_SECONDS = 60
BLENDS = ("per_model", "per_column", "uniform")


# ---------------------------------------------------------------------------------------------------
# Images


def list_images(sources):
    """[(shown name, path), ...] of the image files of `sources` (folders and files) in the order given, each folder's
    sorted by name; a folder's files are shown relative to it. DataError for a source that does not exist."""
    images = []
    for source in map(Path, sources):
        if source.is_dir():
            images += [(str(path.relative_to(source)), path) for path in sorted(source.iterdir())
                       if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
        elif source.is_file():
            images.append((str(source), source))
        else:
            raise errors.DataError(f"{source}: no such file or folder")
    if not images:
        raise errors.DataError(f"{', '.join(map(str, sources))}: no .jpg, .jpeg or .png files")
    return images


def read_image(path):
    """The image at path as the models see the competition's images: uint8 (424, 424, 3) RGB, its centred largest
    square resampled (Lanczos). DataError naming the file when it is not a readable JPEG or PNG."""
    size = load_data.IMAGE_SIZE
    try:
        with Image.open(path) as image:
            if image.format not in IMAGE_FORMATS:
                raise errors.DataError(f"{path}: not a JPEG or PNG image (found {image.format})")
            image.draft("RGB", (size, size))  # a large JPEG is decoded at 1/2, 1/4 or 1/8 scale, still >= 424
            pixels = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise errors.DataError(f"{path}: cannot read as an image ({exc})") from None
    width, height = pixels.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = pixels.crop((left, top, left + side, top + side))
    return np.asarray(square if side == size else square.resize((size, size), Image.LANCZOS))


def file_stamp(path):
    """(size, modification time) of a file: a resumed run redoes a file whose stamp changed."""
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


# ---------------------------------------------------------------------------------------------------
# Models


class Member:
    """One trained model as applied here: the network, its input views, preprocessing and test-time transforms."""

    def __init__(self, entry, device, transform_set, num_transforms):
        script = Path(entry) if entry.endswith(".py") else None
        self.name = script.stem if script else entry
        self.model, config = checkpoints.load_trained(self.name, device=device, script=script,
                                                      check_training_data=False)
        self.views = ra.input_views(config["INPUT"])
        self.preprocessing = config["PREPROCESSING"]
        self.transform_choice = (dict(set=transform_set, count=num_transforms) if transform_set is not None
                                 else step6_transforms(self.name, self.model))
        self.transforms = predict_augmented_npy.selected_transforms(self.transform_choice["count"],
                                                                    self.transform_choice["set"])

    def key(self):
        """What this member's predictions depend on."""
        return (f"{backbones.fingerprint(self.model.state_dict())}:{self.views}:{self.preprocessing}:"
                f"{self.transforms.tobytes().hex()}")

    def prepro(self, image):
        """(3, 3) preprocessing of one image (uint8 (424, 424, 3)), or None for a model without any."""
        if self.preprocessing is None:
            return None
        param_set = source_params.PREPROCESSING[self.preprocessing][0]
        green = (image.astype(np.float32) / 255.0)[..., source_extraction.GREEN].astype(np.float64)
        rows = source_extraction.measure_green(green, "sep", "image")
        row = rows[source_params.PARAM_SETS.index(param_set)][0]
        columns = {name: np.array([value]) for name, value in zip(param_set.columns, row)}
        return ra.prepro_from_columns(self.preprocessing, columns)[0]

    def predict(self, images, device, batch_size):
        """Averaged predictions (n, 37) float64, clipped to [0, 1] as step 6's files are read, of images (n, 424,
        424, 3) uint8."""
        views = np.stack([ra.to_float(ra.warp_uint8(image, np.stack([ra.view_matrices(t, self.prepro(image),
                                                                                        self.views)
                                                                      for t in self.transforms]), self.views.size))
                          for image in images])
        outputs = predict_augmented_npy.predict_views(self.model, views, device, batch_size)
        return np.clip(outputs.mean(axis=1), 0.0, 1.0)


def step6_transforms(model, network):
    """The transforms step 6 averaged model's test predictions over ({"set", "count"} from that file's record), or
    all of the network's own set (predict_augmented_npy.model_transform_set) when it has no such file."""
    path = paths.augmented_predictions_path(model, "test")
    if path.exists():
        chosen = records.read_record(path, f"run predict_augmented_npy.py {model} again").get("inputs", {})
        if "transforms" in chosen:
            return dict(chosen["transforms"])
    return dict(set=predict_augmented_npy.model_transform_set(network, None, None), count=None)


def blend_weights(members, blend):
    """(weights (M,) or (M, 37), a line saying which) for the members' predictions."""
    names = [member.name for member in members]
    uniform = np.full(len(members), 1.0 / len(members))
    if len(members) == 1 or blend == "uniform":
        return uniform, "plain average" if len(members) > 1 else "one model"
    path = blend_predictions.blended_dir() / blend_predictions.WEIGHTS_FILE
    if not path.exists():
        return uniform, f"plain average: no fitted weights ({path} is missing; run blend_predictions.py)"
    models, weights = blend_predictions.load_weights()
    if sorted(models) != sorted(names):
        return uniform, (f"plain average: the fitted weights in {path} are for {', '.join(models)}, not for these "
                         "models")
    for name in names:  # the weights were fitted on predictions made from the checkpoints as they are now
        records.check_record(paths.augmented_predictions_path(name, "valid"),
                               f"run predict_augmented_npy.py {name} and blend_predictions.py again, or use --blend "
                               "uniform")
    order = [models.index(name) for name in names]
    return weights[blend][order], f"{blend} weights fitted on the validation set ({path})"


def blended(members, weights, images, device, batch_size):
    """The members' predictions of images blended with weights: (n, 37) float64."""
    total = 0.0
    for member, weight in zip(members, weights):
        total = total + member.predict(images, device, batch_size) * weight
    return total


# ---------------------------------------------------------------------------------------------------
# Results kept across runs


def partial_path(out):
    return Path(out).with_name(Path(out).name + ".partial.npz")


def load_done(partial, key):
    """{(shown name, file stamp): values (37,) or an error message} finished by an earlier run with the same key."""
    if not partial.exists():
        return {}
    try:
        with np.load(partial, allow_pickle=False) as saved:
            if str(saved["key"]) != key:
                print(f"{partial}: made for other models, transforms or weights; starting over")
                return {}
            done = {(str(n), str(s)): v for n, s, v in zip(saved["names"], saved["stamps"], saved["values"])}
            done.update({(str(n), str(s)): str(e) for n, s, e in zip(saved["bad_names"], saved["bad_stamps"],
                                                                     saved["errors"])})
    except (OSError, ValueError, KeyError):
        print(f"{partial}: unreadable; starting over")
        return {}
    print(f"{partial}: continuing after the {len(done)} images done by an earlier run")
    return done


def save_done(partial, key, done):
    good = {k: v for k, v in done.items() if not isinstance(v, str)}
    bad = {k: v for k, v in done.items() if isinstance(v, str)}
    with files.atomic_path(partial) as tmp, open(tmp, "wb") as file:
        np.savez(file, key=key, names=[k[0] for k in good], stamps=[k[1] for k in good],
                 values=np.array(list(good.values())).reshape(-1, decision_tree.NUM_OUTPUTS),
                 bad_names=[k[0] for k in bad], bad_stamps=[k[1] for k in bad], errors=list(bad.values()))


def run_key(members, weights):
    digest = hashlib.sha256("|".join(member.key() for member in members).encode())
    digest.update(np.ascontiguousarray(weights, dtype=np.float64).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# The run


def classify(images, members, weights, device, batch_size, done, save):
    """Fill `done` ({(name, stamp): values or error}) for every image of `images` ([(name, path)]) not in it yet,
    IMAGES_PER_CHUNK at a time; save(done) every PARTIAL_SAVE_SECONDS, and on an error or a stop."""
    todo = [(name, path, file_stamp(path)) for name, path in images]
    todo = [item for item in todo if (item[0], item[2]) not in done]
    last_save = time.time()
    try:
        with tqdm(total=len(images), initial=len(images) - len(todo), unit="img", dynamic_ncols=True,
                  mininterval=1.0) as bar:
            for start in range(0, len(todo), IMAGES_PER_CHUNK):
                chunk, readable = todo[start:start + IMAGES_PER_CHUNK], []
                for name, path, stamp in chunk:
                    try:
                        readable.append(((name, stamp), read_image(path)))
                    except errors.DataError as exc:
                        done[(name, stamp)] = str(exc)
                if readable:
                    values = blended(members, weights, np.stack([pixels for _, pixels in readable]), device,
                                     batch_size)
                    done.update({key: row for (key, _), row in zip(readable, values)})
                bar.update(len(chunk))
                if time.time() - last_save > PARTIAL_SAVE_SECONDS:
                    save(done)
                    last_save = time.time()
    except BaseException:
        save(done)
        raise


def answer_columns():
    return [f"Q{question.number} {question.text}" for question in decision_tree.QUESTIONS]


def write_csv(out, rows):
    """The CSV of [(name, values (37,)), ...] with the most-voted answers, written atomically."""
    values = np.array([row for _, row in rows]).reshape(-1, decision_tree.NUM_OUTPUTS)
    answers = decision_tree.most_voted_answers(values) if len(values) else np.empty((0, 11), int)
    with files.atomic_path(out) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["file", *decision_tree.COLUMNS, *answer_columns()])
        for (name, _), row, chosen in zip(rows, values, answers):
            words = [question.answers[a] if a >= 0 else "" for question, a in zip(decision_tree.QUESTIONS, chosen)]
            writer.writerow([name, *(f"{value:.6f}" for value in row), *words])


def run(args):
    images = list_images(args.sources)
    out = Path(args.out)
    files.check_writable(out.absolute().parent)
    device = checkpoints.pick_device(args.device)
    tf32_note = precision.set_tf32(device, args.tf32)
    if tf32_note:
        print(tf32_note)
    members = [Member(entry, device, args.transform_set, args.num_transforms) for entry in args.models]
    weights, how = blend_weights(members, args.blend)
    for member in members:
        print(f"{member.name}: {len(member.transforms)} test-time transforms ({member.transform_choice['set']})")
    print(f"{len(images)} images, {len(members)} models on {device}; {how}")
    partial = partial_path(out)
    with files.take_lock(out.with_name(out.name + ".lock"), [out, partial],
                             f"another classify_images.py run writes {out}"):
        key = run_key(members, weights)
        done = load_done(partial, key)
        classify(images, members, weights, device, args.batch_size, done, lambda d: save_done(partial, key, d))
        stamps = [(name, file_stamp(path)) for name, path in images]
        rows = [(name, done[(name, stamp)]) for name, stamp in stamps if not isinstance(done[(name, stamp)], str)]
        bad = [done[(name, stamp)] for name, stamp in stamps if isinstance(done[(name, stamp)], str)]
        write_csv(out, rows)
        partial.unlink(missing_ok=True)
    print(f"wrote {out}: {len(rows)} images classified")
    if bad:
        print(f"{len(bad)} of {len(images)} images skipped, not readable:", *bad, sep="\n  ")
    if not rows:
        raise errors.DataError(f"none of the {len(images)} images could be read")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="DIR_OR_FILES", help="image folders and files (JPEG, PNG)")
    parser.add_argument("--models", required=True,
                        help="comma-separated try_*.py names (checkpoints analysis/final/NAME.pt), or paths of try "
                             "scripts outside the project folder")
    parser.add_argument("--out", default="classifications.csv", help="the CSV to write (default classifications.csv)")
    parser.add_argument("--blend", choices=BLENDS, default="per_model",
                        help="how several models are combined: the fitted weight per model (default), per model and "
                             "column, or the plain average")
    parser.add_argument("--transform-set", choices=sorted(predict_augmented_npy.TRANSFORM_SETS), default=None,
                        help="test-time transforms for every model (default: those step 6 used for each)")
    parser.add_argument("--num-transforms", type=int, default=None,
                        help="how many of the set's transforms (an evenly spread subset; with --transform-set, "
                             "default all)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available)")
    parser.add_argument("--batch-size", type=int, default=predict_augmented_npy.BATCH_SIZE, help="views per forward pass")
    precision.add_precision_arguments(parser, amp=False)
    runner.add_options(parser, "root")
    args = parser.parse_args(argv)
    args.models = [entry.strip() for entry in args.models.split(",") if entry.strip()]
    if not args.models:
        parser.error("--models names no model")
    if args.num_transforms is not None and args.transform_set is None:
        args.transform_set = "original"
    if args.transform_set is not None:
        size = predict_augmented_npy.TRANSFORM_SETS[args.transform_set]
        if args.num_transforms is not None and not 1 <= args.num_transforms <= size:
            parser.error(f"--num-transforms must be within 1..{size} for --transform-set {args.transform_set}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def main(argv=None):
    args = parse_args(argv)
    runner.apply_root(args)
    return runner.report_errors(lambda: run(args), "the images done so far are kept in "
                                        f"{partial_path(args.out)}; run the same command again to continue")


if __name__ == "__main__":
    sys.exit(main())
