"""Test-time averaging: predict the validation split and the test set with a trained model, averaging each
image's predictions over 60 transforms (10 rotations 36 degrees apart x zooms 1/1.2, 1, 1.2 x flipped or
not), as in the original solution.

    python predict_augmented_npy.py try_convnet_cc_multirotflip_3x69r45_maxout2048_extradense
    python predict_augmented_npy.py MODEL --num-transforms 6        # a quicker, coarser average

Reads analysis/final/<MODEL>.pt; writes predictions/final/augmented/valid/<MODEL>.npy.gz and
predictions/final/augmented/test/<MODEL>.npy.gz ((N, 37) float32, rows in ID order), each with its record (the IDs
of its rows, the checkpoint, the transforms), then prints the validation RMSE of the identity transform alone and of
the average.

--num-transforms T keeps T of the 60 transforms, spread evenly: list the 60 with the rotation angle
varying slowest (0, 36, ..., 324 degrees), then unflipped/flipped, then the zoom fastest (1, 1/1.2, 1.2),
and take entries floor(k * 60 / T) for k = 0..T-1. Entry 0 is the identity, so every subset contains it;
T=2 gives the identity and its 180-degree turn, T=10 the 10 rotations at zoom 1, T=20 adds their flipped
copies, T=30 covers every rotation with two of the six (flip, zoom) combinations.

--transform-set rot8flip averages over 16 transforms instead (8 rotations 45 degrees apart x flipped or not, zoom 1);
--transform-set p4m over 12 (rotations by 0, 22.5, 45 and 67.5 degrees x zooms 1, 1/1.2, 1.2), the default for a
network exactly invariant to quarter turns and flips (galaxyzoo/p4m.py), for which every other set repeats views.

A run stopped by Ctrl-C or an error keeps the images done so far beside the output files (<MODEL>.partial<rank>.npz,
also every minute); the same command continues after them, unless the model, images, transforms or ranks changed.
A split whose file an earlier run wrote from the same checkpoint, images and transforms is kept, not predicted again.

Under `torchrun --nproc_per_node=N predict_augmented_npy.py MODEL` rank r predicts positions r, r + N, ...
of each split (on cuda:LOCAL_RANK when CUDA is used); rank 0 gathers the shards and writes the same files
as a single process does.
"""
import argparse
import hashlib
import sys
import time

import numpy as np
from tqdm import tqdm

from galaxyzoo import backbones
from galaxyzoo import checkpoints
from galaxyzoo import decision_tree
from galaxyzoo import distributed
import load_data
from galaxyzoo import precision
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import submission
from galaxyzoo import paths
from galaxyzoo import records
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors

NUM_ROTATIONS, NUM_FLIPS, NUM_ZOOMS = ra.TTA_NUM_ROTATIONS, len(ra.TTA_FLIPS), len(ra.TTA_ZOOMS)
NUM_TRANSFORMS = NUM_ROTATIONS * NUM_FLIPS * NUM_ZOOMS
# Positions in ra.TTA_ZOOMS in the spread order, which visits zoom 1 first.
ZOOMS_IDENTITY_FIRST = sorted(range(NUM_ZOOMS), key=lambda k: (ra.TTA_ZOOMS[k] != 1.0, k))
BATCH_SIZE = 32  # views per forward pass, as in the original solution


def spread_transform_indices(num_transforms):
    """Indices into tta_transforms() of an evenly spread subset of num_transforms (1..60) transforms,
    the identity first (see the module docstring for the order)."""
    total = NUM_TRANSFORMS
    if not 1 <= num_transforms <= total:
        raise ValueError(f"--num-transforms must be within 1..{total}, got {num_transforms}")
    picks = np.arange(num_transforms) * total // num_transforms
    rotation, rest = np.divmod(picks, NUM_FLIPS * NUM_ZOOMS)
    flip, zoom = np.divmod(rest, NUM_ZOOMS)
    # tta_transforms() order: for zoom, for rotation, [unflipped, flipped].
    return np.asarray(ZOOMS_IDENTITY_FIRST)[zoom] * NUM_ROTATIONS * NUM_FLIPS + rotation * NUM_FLIPS + flip


# A network exactly invariant to quarter turns and flips (p4m.P4MNet) gains nothing from them: its set turns by the
# four angles that no quarter turn maps onto each other (0, 22.5, 45, 67.5 degrees) at the original's three zooms.
P4M_ANGLES = (0.0, 22.5, 45.0, 67.5)
P4M_ZOOMS = (1.0, 1 / 1.2, 1.2)
# The named sets of fixed transforms: the original's 60; the 16 views (8 rotations x flip, no zoom) that later
# single models averaged over; the 12 for p4m-invariant networks (listed with the angle varying fastest).
TRANSFORM_SETS = {"original": NUM_TRANSFORMS, "rot8flip": 16, "p4m": len(P4M_ANGLES) * len(P4M_ZOOMS)}
DEFAULT_TRANSFORM_SET = "original"  # for a network that names no set of its own (test_transform_set)


def transform_set_matrices(transform_set):
    """(T, 3, 3) every transform of a set of TRANSFORM_SETS other than the original, entry 0 the identity."""
    if transform_set == "rot8flip":
        return ra.tta_transforms(num_rotations=8, zooms=(1.0,))
    return np.stack([ra.augmentation_transform(zoom, angle) for zoom in P4M_ZOOMS for angle in P4M_ANGLES])


def selected_transforms(num_transforms=None, transform_set="original"):
    """(T, 3, 3) augmentation matrices of a set of TRANSFORM_SETS, entry 0 the identity: all of them, or an
    evenly spread subset of num_transforms."""
    check_count(transform_set, num_transforms)
    size = TRANSFORM_SETS[transform_set]
    num_transforms = size if num_transforms is None else num_transforms
    if transform_set == "original":
        return ra.tta_transforms()[spread_transform_indices(num_transforms)]
    return transform_set_matrices(transform_set)[np.arange(num_transforms) * size // num_transforms]


def model_transform_set(model, chosen, num_transforms):
    """The transform set to average model's predictions over: `chosen` (--transform-set), else the network's own
    (its test_transform_set) or DEFAULT_TRANSFORM_SET; SettingError when num_transforms does not fit in it."""
    transform_set = chosen or getattr(model, "test_transform_set", DEFAULT_TRANSFORM_SET)
    check_count(transform_set, num_transforms)
    return transform_set


def check_count(transform_set, num_transforms):
    """SettingError unless num_transforms (None: all) of the set transform_set can be picked."""
    size = TRANSFORM_SETS[transform_set]
    if num_transforms is not None and not 1 <= num_transforms <= size:
        raise errors.SettingError(f"--num-transforms must be within 1..{size} for --transform-set {transform_set}, "
                                  f"got {num_transforms}")


def predict_views(model, views, device, batch_size=BATCH_SIZE):
    """Model outputs for every view set: views (m, T, 2, 3, 69, 69) numpy -> (m, T, 37) float64 numpy."""
    outputs = checkpoints.forward_batched(model, views.reshape((-1,) + views.shape[2:]), device, batch_size)
    return outputs.astype(np.float64).reshape(views.shape[0], views.shape[1], decision_tree.NUM_OUTPUTS)


PARTIAL_SAVE_SECONDS = 60  # how often an unfinished run keeps what it has predicted
# Disk per image predicted, at most: its row of 37 float32 in the output file, and two of 37 float64 in the partial
# file, which stays until the output is written.
BYTES_PER_IMAGE = decision_tree.NUM_OUTPUTS * (4 + 2 * 8)


def load_partial(partial, key):
    """(averaged, first_only) of the images an earlier run with the same `key` finished, a prefix of them; or
    two empty arrays."""
    empty = np.empty((0, decision_tree.NUM_OUTPUTS))
    if partial is None or not partial.exists():
        return empty, empty
    try:
        with np.load(partial) as saved:
            if str(saved["key"]) == key:
                print(f"{partial}: continuing after the {len(saved['averaged'])} images predicted by an earlier run")
                return saved["averaged"], saved["first_only"]
    except (OSError, ValueError, KeyError):
        pass
    print(f"{partial}: made for another model, transforms or image list, or unreadable; starting over")
    return empty, empty


def save_partial(partial, key, averaged, first_only, done):
    with files.atomic_path(partial) as tmp, open(tmp, "wb") as file:
        np.savez(file, key=key, averaged=averaged[:done], first_only=first_only[:done])


def predict_augmented(model, galaxy_ids, subset, transforms, prepro, device, batch_size=BATCH_SIZE, workers=None,
                      label=None, progress=True, views=None, partial=None, key=""):
    """Predictions for galaxy_ids (N,) of `subset` averaged over transforms (T, 3, 3), and those of
    transforms[0] alone: two (N, 37) float64 arrays in the order of galaxy_ids. label names the progress bar
    (shown when `progress`); views: the model's ra.InputViews (default: the original's). partial: None, or a file
    that keeps the images done so far (every minute, on an interruption or error, and once all are done, so that
    they outlive a failure to write the output file); a rerun with the same `key` (what the predictions depend on)
    continues after them."""
    averaged = np.empty((len(galaxy_ids), decision_tree.NUM_OUTPUTS))
    first_only = np.empty_like(averaged)
    kept_averaged, kept_first = load_partial(partial, key)
    done = len(kept_averaged)
    averaged[:done], first_only[:done] = kept_averaged, kept_first
    views_source = ra.fixed_views(galaxy_ids[done:], subset, transforms,
                                  prepro=None if prepro is None else prepro[done:], num_workers=workers, views=views)
    last_save, finished = time.time(), done
    try:
        with tqdm(total=len(galaxy_ids), initial=done, desc=label or subset, unit="img",
                  dynamic_ncols=True, mininterval=1.0, disable=not progress) as bar:
            for positions, chunk_views in views_source:
                outputs = predict_views(model, chunk_views, device, batch_size)
                averaged[done + positions] = outputs.mean(axis=1)
                first_only[done + positions] = outputs[:, 0]
                bar.update(len(positions))
                if partial is not None and time.time() - last_save > PARTIAL_SAVE_SECONDS:
                    save_partial(partial, key, averaged, first_only, done + positions[-1] + 1)
                    last_save = time.time()
                finished = done + positions[-1] + 1
        if partial is not None:
            save_partial(partial, key, averaged, first_only, finished)
    except BaseException:
        if partial is not None and finished > 0:
            save_partial(partial, key, averaged, first_only, finished)
        raise
    return averaged, first_only


def partial_key(model, galaxy_ids, transforms, prepro, config, ranks):
    """What a split's predictions depend on: the model's parameters, the images, the transforms and
    preprocessing, the input, and this rank's share."""
    digest = hashlib.sha256(f"{backbones.fingerprint(model.state_dict())}:{config['INPUT']}:"
                            f"{ranks.rank}/{ranks.world_size}".encode())
    for array in (galaxy_ids, transforms, prepro):
        digest.update(b"-" if array is None else np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def partial_path(model_name, split, ranks):
    """Where a split's unfinished predictions are kept (one file per rank)."""
    path = paths.augmented_predictions_path(model_name, split)
    return path.with_name(f"{model_name}.partial{ranks.rank}.npz")


def predict_split_sharded(model, galaxy_ids, subset, transforms, prepro, args, device, ranks, label, views,
                          partial=None, key=""):
    """predict_augmented of this rank's shard of galaxy_ids (positions rank::world_size), gathered: on rank 0
    the two (N, 37) arrays in the order of galaxy_ids, on the other ranks (None, None)."""
    shard = distributed.rank_positions(len(galaxy_ids), ranks)
    averaged, identity = predict_augmented(model, galaxy_ids[shard], subset, transforms,
                                           None if prepro is None else prepro[shard], device, args.batch_size,
                                           args.workers, label=label, progress=ranks.is_main, views=views,
                                           partial=partial, key=key)
    return (distributed.gather_rows(averaged, len(galaxy_ids), ranks),
            distributed.gather_rows(identity, len(galaxy_ids), ranks))


def run(args, ranks=distributed.Ranks()):
    """predict_all, holding the model's prediction lock on rank 0 (a second run of the same model is refused while
    this one lives) after the stale temporaries of its files are removed."""
    if not ranks.is_main:
        return predict_all(args, ranks)
    outputs = [paths.augmented_predictions_path(args.model, split) for split in load_data.SPLITS]
    files.check_writable(*(path.parent for path in outputs))
    checkpoints.require_checkpoint(args.model, args.script)  # the inputs, before the lock makes its folder
    num_images = sum(len(load_data.split_ids(split)) for split in load_data.SPLITS)
    files.check_free_space(outputs[0].parent.parent, num_images * BYTES_PER_IMAGE,
                               f"the predictions of {num_images} images")
    with files.take_lock(paths.predictions_dir() / "augmented" / f"{args.model}.lock",
                             outputs + [partial_path(args.model, split, ranks) for split in load_data.SPLITS],
                             f"another prediction run of {args.model} is writing the same files"):
        predict_all(args, ranks)


def predict_all(args, ranks):
    """Predict the validation and test images with the model of args.model and write both files (rank 0)."""
    device = distributed.rank_device(checkpoints.pick_device(args.device), ranks)
    distributed.start(device, ranks)
    tf32_note = precision.set_tf32(device, args.tf32)
    if tf32_note and ranks.is_main:
        print(tf32_note)
    model, config = checkpoints.load_trained(args.model, device=device, script=args.script)
    transform_set = model_transform_set(model, args.transform_set, args.num_transforms)
    made_from = dict(checkpoint=records.file_input(checkpoints.checkpoint_path(args.model)),
                     transforms={"set": transform_set, "count": args.num_transforms})
    transforms = selected_transforms(args.num_transforms, transform_set)
    if ranks.is_main:
        print(f"{args.model} on {device}{f' x {ranks.world_size} ranks' if ranks.active else ''}: "
              f"averaging over {len(transforms)} transforms of the set {transform_set}")

    splits = [(split, load_data.split_ids(split), load_data.SPLIT_SUBSET[split]) for split in load_data.SPLITS]
    checked = load_data.check_images_read([(subset, ids) for _, ids, subset in splits])
    if ranks.is_main:
        print(checked)
    results = {}
    for split, ids, subset in splits:
        path, inputs = paths.augmented_predictions_path(args.model, split), dict(ids=records.ids_stamp(ids),
                                                                                    **made_from)
        if is_written(path, inputs):
            if ranks.is_main:
                print(f"{path}: kept, made by an earlier run from the same checkpoint, images and transforms")
            results[split] = (records.load_gz(path).astype(np.float64), None)
            continue
        prepro = ra.prepro_matrices(config["PREPROCESSING"], ids, subset)
        partial = partial_path(args.model, split, ranks)
        averaged, identity = predict_split_sharded(model, ids, subset, transforms, prepro, args, device, ranks,
                                                   label=split, views=ra.input_views(config["INPUT"]),
                                                   partial=partial,
                                                   key=partial_key(model, ids, transforms, prepro, config, ranks))
        if ranks.is_main:
            averaged = submission.check_predictions(ids, averaged, f"{args.model}'s {split} predictions (not written)")[1]
            write_predictions(path, averaged, inputs, partial)
            results[split] = (averaged, identity)
        distributed.barrier(ranks)
        partial.unlink(missing_ok=True)
    if not ranks.is_main:
        return
    averaged, identity = results["valid"]
    valid_labels = load_data.labelled_split().valid_labels
    identity_score = ("kept from an earlier run" if identity is None
                      else f"{submission.rmse(identity, valid_labels):.6f}")
    print(f"validation RMSE ({len(valid_labels)} images): identity transform only {identity_score}, averaged over "
          f"{len(transforms)} transforms {submission.rmse(averaged, valid_labels):.6f}")


def write_predictions(path, averaged, inputs, partial):
    """save_gz of a split's averaged predictions (N, 37) with its record; DataError when the write fails, saying that
    the predictions stay in `partial` (predict_augmented kept them there) for the rerun to write."""
    try:
        records.save_gz(path, averaged.astype(np.float32), "predict_augmented_npy.py", **inputs)
    except OSError as exc:
        raise errors.DataError(f"{path}: cannot write the predictions ({exc.strerror or exc}); the "
                                  f"{len(averaged)} images predicted are kept in {partial.parent}/*.partial*.npz: "
                                  f"free some space and run the same command again to write them") from None
    print(f"wrote {path}")


def is_written(path, inputs):
    """Whether path already holds the predictions this run would write: its record lists exactly `inputs` (so that a
    run stopped in the test split, rerun, keeps the validation split instead of predicting it again)."""
    if not path.exists():
        return False
    try:
        return records.read_record(path, "").get("inputs") == inputs
    except errors.DataError:
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="the try_*.py script's name, with or without .py (its checkpoint is "
                        "analysis/final/MODEL.pt)")
    parser.add_argument("--transform-set", choices=sorted(TRANSFORM_SETS), default=None,
                        help="original: the original's 60 transforms; rot8flip: 8 rotations x flip (16); p4m: 4 "
                        "rotations 22.5 degrees apart x 3 zooms (12). Default: the network's own (p4m for a "
                        "p4m-invariant one), else original")
    parser.add_argument("--num-transforms", type=int, default=None,
                        help="how many of the set's transforms to average over (an evenly spread subset; default all)")
    parser.add_argument("--script", default=None, help="the model's try_*.py file when it is not MODEL.py in the "
                        "project folder")
    runner.add_options(parser, "device", "batch_size", "workers")
    precision.add_precision_arguments(parser, amp=False)
    runner.add_options(parser, "root")
    args = parser.parse_args(argv)
    runner.check_options(parser, args)
    args.batch_size = args.batch_size or BATCH_SIZE
    if args.transform_set is not None:  # without it the network's set decides, once it is loaded (model_transform_set)
        try:
            check_count(args.transform_set, args.num_transforms)
        except errors.SettingError as exc:
            parser.error(str(exc))
    runner.apply_root(args)
    args.model = runner.model_name_argument(args.model)
    ranks = distributed.ranks_from_environment()

    def work():
        paths.check_root()
        run(args, ranks)

    return runner.report_errors(lambda: distributed.run_rank(work, ranks),
                                "the images predicted so far are kept beside the output files (*.partial<rank>.npz), "
                                "and the same command continues from there", ranks.rank if ranks.active else None)


if __name__ == "__main__":
    sys.exit(main())
