"""The one training loop shared by every try_*.py model.

A try_*.py file holds a recipe (module-level constants such as BATCH_SIZE and LEARNING_RATE_SCHEDULE) and
build_model(); its `__main__` calls `train.main(globals())`. The loop then:

  1. reads the training IDs and labels, keeps the last 10% for validation, precomputes the validation views;
  2. trains on chunks of freshly augmented images (realtime_augmentation.RandomChunks) with Nesterov momentum
     and the MSE loss, the first NUM_CHUNKS_NONORM chunk(s) without the output layer's normalisation;
  3. every VALIDATE_EVERY chunks prints the validation RMSE and writes the checkpoint
     analysis/final/<model>.pt and the learning curve analysis/final/<model>_learning_curve.png;
  4. at the end writes the final checkpoint (with the validation predictions) and the test-set submission
     predictions/final/<model>.csv.gz.

Stopping and resuming: on SIGINT or SIGTERM the loop finishes the batch in progress, writes a checkpoint of
exactly that state (parameters, momentum, RNG state, position = chunk and batch within the chunk) and exits 0.
Running the same command again resumes there: chunk k's images depend only on (seed, k), so the interrupted
chunk is generated again and its already-trained batches are skipped. The resumed run ends with the same
parameters as an uninterrupted one.

Several processes: `torchrun --nproc_per_node=N try_x.py ...` trains one model with N ranks
(DistributedDataParallel; NCCL on CUDA with rank r on cuda:LOCAL_RANK, gloo on the CPU); without torchrun's
environment variables the loop is the single-process one above, unchanged. The recipe stays the original's:
the global minibatch is still BATCH_SIZE (16) images and rank r trains on images [r * 16/N, (r + 1) * 16/N)
of every minibatch (BATCH_SIZE must be divisible by N). Each rank's MSE is the mean over its 16/N images and
DDP averages the gradients over the ranks, which is the gradient of the MSE over all 16 images, so the
learning rate is unchanged. Each rank builds only its share of each chunk (chunk k is still drawn from
(seed, k), so the ranks' shares together are the single-process chunk). Dropout masks differ per rank:
before every minibatch b of chunk k each rank seeds torch from (seed, rank, k, b). Rank 0 alone prints,
validates and writes the checkpoint, the learning-curve PNG and the submission CSV; the others wait at a
barrier meanwhile, and leave once training is done. Checkpoints hold the plain (unwrapped) model, the
optimiser and the global position (chunk, batch), so a run resumes on any number of ranks, one included.
A SIGINT/SIGTERM reaching any rank stops all of them after the same minibatch: the ranks all-reduce a stop
flag together with the minibatch loss after every minibatch; rank 0 then saves.

Options for speed (the defaults are the faithful fp32 recipe): --data-on-device keeps the training images
as uint8 on the training device (torch_augmentation.DeviceImageCache) and warps each minibatch there with
the same per-image draws as RandomChunks (realtime_augmentation.draw_chunk_plan), instead of worker
processes; --amp bf16 runs forward and backward under bfloat16 autocast (on CUDA or the CPU); --tf32 lets
CUDA use TF32 in matrix products and convolutions, which are strict fp32 otherwise (precision.py).
"""
import argparse
import contextlib
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from galaxyzoo import checkpoints
from galaxyzoo import device_chunks
from galaxyzoo import learning_curve
from galaxyzoo import model_submission
from galaxyzoo import decision_tree
from galaxyzoo import distributed
import layers
import load_data
from galaxyzoo import precision
from galaxyzoo import realtime_augmentation as ra
from galaxyzoo import recipe
from galaxyzoo import stages
from galaxyzoo import submission
from galaxyzoo import torch_augmentation as ta

from galaxyzoo import paths
from galaxyzoo import files
from galaxyzoo import runner
from galaxyzoo import errors

MAX_NORM_EVERY = 10  # batches between max-norm rescalings, as in the original solution
LOOP_STATE_KEYS = ("next_chunk", "next_batch", "chunk_losses", "losses_train", "losses_valid")


# ---------------------------------------------------------------------------------------------------
# Configuration


def parse_args(try_file, argv=None):
    recipe_ = try_file.recipe
    parser = argparse.ArgumentParser(description=try_file.doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show-recipe", action="store_true",
                        help="print the effective recipe, each setting with where its value came from, and exit")
    parser.add_argument("--num-chunks", type=int, help=f"training chunks (recipe: {recipe_.NUM_CHUNKS}); the stages' "
                        "boundaries (the learning-rate schedule) are scaled to match")
    parser.add_argument("--chunk-size", type=int, help=f"images per chunk (recipe: {recipe_.CHUNK_SIZE}); a multiple "
                        "of the batch size, so that every image drawn is trained on (other values are refused)")
    parser.add_argument("--validate-every", type=int,
                        help=f"chunks between validations (recipe: {recipe_.VALIDATE_EVERY})")
    runner.add_options(parser, "batch_size", "seed", "device", "workers")
    parser.add_argument("--max-valid", type=int, default=None, help="validate on at most this many images (quick runs)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    parser.add_argument("--data-on-device", action="store_true",
                        help="hold the training images on the training device and augment there (no workers)")
    parser.add_argument("--init", choices=("original", "standard"), default=None,
                        help=f"original: the recipe's initialisation; standard: He/PyTorch-default scaling "
                        "(layers.reinitialise_standard), which leaves the training mean within a few thousand "
                        f"images where the original's was still at it after the demo's 12,000: for short CPU runs "
                        f"(recipe: {recipe_.INIT})")
    parser.add_argument("--weights", default=None,
                        help="pretrained backbone weights, for recipes that fine-tune one (backbones.py): hub "
                        "(download from the Hugging Face hub) or a .safetensors or state-dict file. Read at the start "
                        "of a run, not when resuming")
    precision.add_precision_arguments(parser)
    runner.add_options(parser, "root")
    args = parser.parse_args(argv)
    runner.check_options(parser, args)
    for name in ("num_chunks", "chunk_size", "validate_every", "max_valid"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def effective_try_file(try_file, args):
    """The TryFile with the command line's settings applied (recipe.TryFile.with_overrides)."""
    return try_file.with_overrides(
        NUM_CHUNKS=("--num-chunks", args.num_chunks), CHUNK_SIZE=("--chunk-size", args.chunk_size),
        VALIDATE_EVERY=("--validate-every", args.validate_every), BATCH_SIZE=("--batch-size", args.batch_size),
        SEED=("--seed", args.seed), INIT=("--init", args.init))


def config_of(namespace, argv=()):
    """The effective recipe (run_config) of a try module's globals() with the command-line options argv."""
    try_file = recipe.TryFile.from_namespace(namespace)
    return run_config(try_file, parse_args(try_file, list(argv)))


def run_config(try_file, args):
    """The effective recipe of the try file with the command line applied, as plain data (recipe.Recipe.config());
    ValueError for a chunk size that is not a multiple of the batch size."""
    config = effective_try_file(try_file, args).recipe.config()
    chunk_size, batch_size = config["CHUNK_SIZE"], config["BATCH_SIZE"]
    if chunk_size != recipe.EPOCH and chunk_size % batch_size:
        below, above = chunk_size // batch_size * batch_size, (chunk_size // batch_size + 1) * batch_size
        raise errors.SettingError(f"chunk size {chunk_size} is not a multiple of the batch size {batch_size}: the last "
                         f"{chunk_size % batch_size} images of every chunk would never be trained on; use "
                         f"{'' if below == 0 else f'--chunk-size {below} or '}--chunk-size {above}")
    return config


# ---------------------------------------------------------------------------------------------------
# What a run leaves besides the checkpoint


def rng_state():
    return dict(cpu=torch.get_rng_state(), cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def set_rng_state(state):
    torch.set_rng_state(state["cpu"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------
# Stopping on a signal


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a request to stop after the current batch; a second one stops at once
    (runner.stop_now: later ones are ignored while the run unwinds)."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        for sig in runner.STOP_SIGNALS:
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is KeyboardInterrupt:  # stopping at once: the signals stay ignored
            return
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, signum, frame):
        if self.requested:
            runner.stop_now()
        self.requested = True
        tqdm.write(f"{signal.Signals(signum).name} received: stopping after this batch "
                   "(send it again to stop at once, without saving)")


# ---------------------------------------------------------------------------------------------------
# The loop


LOGGING = {"enabled": True}  # off on every rank but 0


def log(message):
    if LOGGING["enabled"]:
        tqdm.write(message)
        sys.stdout.flush()


class NonFiniteStep(Exception):
    """A minibatch whose loss or gradient is NaN or infinite; its update was not made."""


class Diverged(errors.DataError):
    """Training met a non-finite loss, gradient or parameter and stopped without saving it."""


def train_batch(model, optimizer, views, labels, normalise):
    """One update on a minibatch; returns its MSE. NonFiniteStep, with the parameters left as they were, when the
    loss or a gradient is NaN or infinite (one sum over the gradients: a fraction of the backward pass's cost)."""
    predictions = model(views, normalise=normalise)
    loss = F.mse_loss(predictions, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if not math.isfinite(loss.item()):
        raise NonFiniteStep(f"the loss is {loss.item()}")
    gradient_sum = sum(p.grad.sum() for p in model.parameters() if p.grad is not None)
    if not bool(torch.isfinite(torch.as_tensor(gradient_sum))):
        raise NonFiniteStep("a gradient holds NaN or infinity")
    optimizer.step()
    return loss.item()


def main(namespace, argv=None):
    """Run the shared training loop for the try_*.py module whose globals() are `namespace`: its settings are checked
    (recipe.TryFile) before anything else is read."""
    ranks = distributed.ranks_from_environment()

    def work():
        try_file = recipe.TryFile.from_namespace(namespace)
        args = parse_args(try_file, argv)
        if args.show_recipe:
            print(effective_try_file(try_file, args).describe())
            return
        runner.apply_root(args)
        paths.check_root()
        check_weights_option(try_file, args)
        run(try_file, args, ranks)

    def stopped_at_once():
        path = checkpoints.checkpoint_path(Path(namespace["__file__"]).stem)
        kept = f"the last checkpoint, {path}, is kept" if path.exists() else "no checkpoint was written yet"
        return f"at once, without saving; {kept}: run {resume_command()} to go on"

    try:
        status = runner.report_errors(lambda: distributed.run_rank(work, ranks), stopped_at_once,
                                      ranks.rank if ranks.active else None)
    finally:
        LOGGING["enabled"] = True
    if status:
        sys.exit(status)


def run(try_file, args, ranks=distributed.Ranks()):
    """train_model, holding the model's training lock (rank 0): a second run of the same model into the same
    checkpoint is refused while this one lives."""
    load_data.labelled_split(), load_data.load_ids("test")  # inputs there, before the lock makes its folder
    if ranks.is_main:
        files.check_writable(paths.analysis_dir(), paths.predictions_dir())
    with checkpoints.training_lock(try_file.name) if ranks.is_main else contextlib.nullcontext():
        train_model(try_file, args, ranks)


def train_model(try_file, args, ranks):
    """Train the model of `try_file` (recipe.TryFile) to the end of its schedule, from its checkpoint when there is
    one, then write the final checkpoint and the test-set submission."""
    model_name = try_file.name
    config = run_config(try_file, args)
    distributed.check_batch_split(config["BATCH_SIZE"], ranks)
    device = distributed.rank_device(checkpoints.pick_device(args.device), ranks)
    LOGGING["enabled"] = ranks.is_main
    distributed.start(device, ranks)
    tf32_note = precision.set_tf32(device, args.tf32)
    if tf32_note:
        log(tf32_note)
    log(f"model {model_name} on {device}{f' x {ranks.world_size} ranks' if ranks.active else ''}; "
        f"writing {checkpoints.checkpoint_path(model_name)}")
    log(schedule_summary(config))

    split = load_data.labelled_split()
    log(load_data.check_images_read([("train", load_data.load_ids("train")), ("test", load_data.load_ids("test"))]))
    if config["CHUNK_SIZE"] == recipe.EPOCH:
        config["CHUNK_SIZE"] = len(split.train_ids) // config["BATCH_SIZE"] * config["BATCH_SIZE"]
        if config["CHUNK_SIZE"] == 0:
            raise errors.DataError(f"{len(split.train_ids)} training images do not fill one batch of "
                                   f"{config['BATCH_SIZE']}")
    valid_ids, valid_labels = split.valid_ids[:args.max_valid], split.valid_labels[:args.max_valid]
    training_mean = np.broadcast_to(split.train_labels.mean(axis=0), valid_labels.shape)
    mean_baseline = submission.rmse(training_mean, valid_labels)
    log(f"{len(split.train_ids)} training and {len(valid_ids)} validation images; "
        f"predicting the training mean scores validation RMSE {mean_baseline:.6f}")

    torch.manual_seed(config["SEED"])
    model = try_file.build_model()
    for stage in config["STAGES"]:
        if hasattr(model, "check_input"):
            model.check_input(ra.input_views(stage["input"]))
    if config["INIT"] == "standard":
        layers.reinitialise_standard(model)
        log("initialisation: standard (He / PyTorch default), not the original recipe's")
    model = model.to(device)
    log(f"{sum(p.numel() for p in model.parameters()):,} parameters")
    trainer = Trainer(model_name, try_file.path, model, config, args, device, ranks)
    if trainer.checkpoint_path.exists() and not args.fresh:
        trainer.resume()
    elif getattr(model, "pretrained", False):
        trainer.weights = model.load_pretrained(args.weights)
        log(f"backbone weights: {trainer.weights['source']} (fingerprint {trainer.weights['sha256']})")
    if ranks.is_main:
        check_room(model, config, len(valid_ids), len(load_data.load_ids("test")))

    valid_prepro = ra.prepro_matrices(config["PREPROCESSING"], valid_ids, "train")
    prepared = {}

    def valid_views_for(declaration):
        """The validation views at an input declaration (made once per declaration, on rank 0 only)."""
        key = repr(declaration)
        if key not in prepared and ranks.is_main:
            log("preparing the validation views")
            prepared[key] = ra.identity_views(valid_ids, "train", valid_prepro, args.workers,
                                              ra.input_views(declaration), label="validation views")
        return prepared.get(key)

    if not trainer.finished():
        chunks = trainer.chunk_source(split.train_ids, split.train_labels)
        if trainer.train_to_end(chunks, valid_views_for, valid_labels, mean_baseline) == "stopped":
            return
    if not ranks.is_main:
        return

    log("final predictions")
    valid_views = valid_views_for(config["INPUT"])
    valid_predictions = np.clip(checkpoints.predict_views(model, valid_views, device, "validation"), 0.0, 1.0)
    valid_rmse = submission.rmse(valid_predictions, valid_labels)
    log(f"final validation RMSE {valid_rmse:.6f} (training-mean baseline {mean_baseline:.6f})")
    trainer.save(valid_ids=torch.from_numpy(np.asarray(valid_ids)),
                 valid_predictions=torch.from_numpy(valid_predictions), valid_rmse=valid_rmse)
    model_submission.write(model, config, device, args.workers, model_name)
    log(f"wrote {checkpoints.submission_path(model_name)}")


# Tensors per parameter in the optimiser's state: Nesterov's velocity; Adam's two moment estimates (three with amsgrad).
OPTIMIZER_STATE_TENSORS = {"nesterov": 1, "adam": 2, "adamw": 2}
SUBMISSION_BYTES_PER_VALUE = 12  # a submission CSV value as text ("0.123456789,"), before gzip shrinks it


def checkpoint_bytes(model, config, num_valid):
    """The size of the model's checkpoint, as train.py writes it, from the model: its parameters and buffers, the
    optimiser's state of the same shapes, and the final checkpoint's validation IDs and predictions."""
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    optimizer = config.get("OPTIMIZER", {"name": "nesterov"})
    moments = OPTIMIZER_STATE_TENSORS[optimizer["name"]] + bool(optimizer.get("amsgrad"))
    return model_bytes * (1 + moments) + num_valid * (8 + decision_tree.NUM_OUTPUTS * 4)


def check_room(model, config, num_valid, num_test):
    """DataError, before training, when the checkpoint folder has no room for the checkpoint (a new one is written
    beside the old one, which it then replaces) or the predictions folder none for the test-set submission."""
    files.check_free_space(paths.analysis_dir(), checkpoint_bytes(model, config, num_valid), "the checkpoint")
    files.check_free_space(paths.predictions_dir(), num_test * decision_tree.NUM_OUTPUTS
                               * SUBMISSION_BYTES_PER_VALUE, "the test-set submission")


def check_weights_option(try_file, args):
    """SettingError, before any data is read, when --weights does not fit the recipe: a recipe that fine-tunes a
    pretrained backbone (its network's `pretrained`) needs hub or a file to start from, and refuses random weights;
    one that trains from random weights takes none."""
    with torch.device("meta"):  # built without memory or time, for its attributes
        model = try_file.build_model()
    weights = args.weights
    resuming = checkpoints.checkpoint_path(try_file.name).exists() and not args.fresh
    if not getattr(model, "pretrained", False):
        if weights is not None:
            raise errors.SettingError(f"--weights {weights}: this recipe trains its network from random weights; "
                                      "--weights is for the recipes that fine-tune a pretrained backbone")
        return
    if weights is None and not resuming:
        raise errors.SettingError(f"this recipe fine-tunes pretrained {model.name} weights: pass --weights hub "
                                  "(download) or --weights PATH (a local file)")
    if weights is not None and weights.lower() in ("none", "random"):
        problem = from_random_weights_problem(run_config(try_file, args))
        raise errors.SettingError(f"--weights {weights}: {problem}. Pass --weights hub or --weights PATH, or train "
                                  "try_resnet18_scratch.py, a residual network with a recipe for random weights")
    if weights not in (None, "hub") and not Path(weights).is_file():
        raise errors.SettingError(f"--weights {weights}: no such file (pass hub, or the path of a .safetensors or "
                                  "state-dict file)")


def from_random_weights_problem(config):
    """Why a fine-tuning recipe does not learn from random weights, from its stages."""
    problems = []
    head_only = [str(number + 1) for number, stage in enumerate(config["STAGES"]) if stage["train"] == "head"]
    if head_only:
        several = len(head_only) > 1
        problems.append(f"stage{'s' if several else ''} {', '.join(head_only)} train{'' if several else 's'} only the "
                        "head over a frozen backbone, which from random weights gives random features")
    rates = [rate for stage in config["STAGES"]
             for rate in (stage["lr"] if isinstance(stage["lr"], (list, tuple)) else [stage["lr"]]) if rate is not None]
    problems.append(f"its rates ({min(rates):g} to {max(rates):g}) and its "
                    f"{sum(stage['chunks'] for stage in config['STAGES'])} chunks are sized to adjust weights that "
                    "already see images")
    return "this recipe is made to fine-tune pretrained weights, not to train from random ones: " + "; ".join(problems)


class Trainer:
    """One model's way through its schedule: the model and its optimiser, the run's config, options, device and
    ranks, and `state`, the position reached and the losses so far, which every checkpoint records:
    next_chunk and next_batch (where training goes on), chunk_losses (the minibatch MSEs of the chunk in
    progress), losses_train (RMSE per finished chunk), losses_valid ((chunks done, RMSE) per validation)."""

    def __init__(self, model_name, script, model, config, args, device, ranks):
        self.model_name, self.script, self.model = model_name, str(Path(script).resolve()), model
        self.config, self.args, self.device, self.ranks = config, args, device, ranks
        self.checkpoint_path = checkpoints.checkpoint_path(model_name)
        self.state = dict(next_chunk=0, next_batch=0, chunk_losses=[], losses_train=[], losses_valid=[])
        self.weights = None  # the pretrained weights the run started from (backbones.load_weights' record)
        self.data = checkpoints.data_stamp()  # the IDs and labels it trains on, which a resumed run must have too
        self.wrapped = None
        self.stages = [stages.Stage(**stage) for stage in config["STAGES"]]
        self.stage_index, self.optimizer = None, None
        # wall time spent by earlier runs of this checkpoint (None: made before checkpoints kept it), and this run's start
        self.seconds_before, self.started = 0.0, time.time()
        self.enter_stage(0)

    def enter_stage(self, index):
        """Set up stage `index`: what trains, the dropout, a new optimiser (or the one going on, restart=False)."""
        stage = self.stages[index]
        stages.enter(self.model, stage)
        if stage.restart or self.optimizer is None:
            self.optimizer = stages.make_optimizer(self.model, stage, self.config["OPTIMIZER"])
            self.wrapped = None  # DistributedDataParallel registers the parameters that train: wrap again
        else:
            stages.set_peaks(self.optimizer, self.model, stage)
        self.stage_index = index
        if self.state["next_chunk"] > 0 or index > 0:
            log(f"stage {index + 1}/{len(self.stages)}: {stage}")

    def input_at(self, chunk):
        """The input declaration in force at chunk `chunk`."""
        return self.stages[stages.stage_at(self.stages, chunk)].input

    def set_learning_rate(self, chunk, batch, batches_per_chunk):
        """Set the optimiser's learning rate for minibatch `batch` of chunk `chunk`; returns it (the last group's)."""
        index = stages.stage_at(self.stages, chunk)
        if index != self.stage_index:
            self.enter_stage(index)
        stage, first = self.stages[index], stages.first_chunks(self.stages)[index]
        step, num_steps = (chunk - first) * batches_per_chunk + batch, stage.chunks * batches_per_chunk
        stages.set_lr(self.optimizer, stages.lr_factor(stage, step, num_steps),
                      stages.momentum_at(stage, step, num_steps))
        return self.optimizer.param_groups[-1]["lr"]

    def finished(self):
        return self.state["next_chunk"] >= self.config["NUM_CHUNKS"]

    def resume(self):
        """Restore model, optimiser, RNG and state from the checkpoint, which must have been made with the same
        config."""
        path, config = self.checkpoint_path, self.config
        saved = checkpoints.load_checkpoint(path)
        saved_config = recipe.config_from_checkpoint(saved["config"])
        if saved_config != config:
            differing = sorted(k for k in set(config) | set(saved_config) if saved_config.get(k) != config.get(k))
            raise errors.DataError(f"{path}: checkpoint was made with other settings ({', '.join(differing)}: "
                                      f"{[saved_config.get(k) for k in differing]} now "
                                      f"{[config.get(k) for k in differing]}); use the same options, or --fresh to "
                                      "start over")
        checkpoints.check_data(path, saved, self.data, "use --fresh to start over on the data as it is now, or "
                                                      "restore those files")
        checkpoints.load_model_state(self.model, saved["model"], path, self.model_name)
        checkpoints.check_finite(path, saved["model"], "use --fresh to start over (with a lower learning rate or "
                                                       "another --seed)")
        self.state = {key: saved[key] for key in LOOP_STATE_KEYS}
        self.weights = saved.get("weights")
        self.seconds_before = saved.get("train_seconds")
        if not self.finished():
            self.enter_stage(stages.stage_at(self.stages, self.state["next_chunk"]))
        self.optimizer.load_state_dict(saved["optimizer"])
        stages.set_peaks(self.optimizer, self.model, self.stages[self.stage_index])  # older checkpoints have none
        set_rng_state(saved["rng"])
        log(f"resuming from {path} at chunk {self.state['next_chunk'] + 1}, batch {self.state['next_batch'] + 1}")

    def save(self, **extra):
        """Write the checkpoint (rank 0 only): the state, the model, the optimiser, the RNG, and `extra`; Diverged,
        with nothing written, when a parameter is not finite."""
        if not self.ranks.is_main:
            return
        bad = checkpoints.first_non_finite(self.model.state_dict())
        if bad is not None:
            raise Diverged(f"training diverged: {bad} holds NaN or infinity after minibatch {self.state['next_batch']} "
                           f"of chunk {self.state['next_chunk'] + 1}; {self.kept()}")
        checkpoints.save_checkpoint(self.checkpoint_path, dict(
            self.state, model=self.model.state_dict(), optimizer=self.optimizer.state_dict(), config=self.config,
            seed=self.config["SEED"], model_name=self.model_name, script=self.script, rng=rng_state(),
            weights=self.weights, data=self.data, train_seconds=self.train_seconds(), **extra))

    def train_seconds(self):
        """Wall time of every run that trained this checkpoint so far, or None when an earlier run did not record it."""
        return None if self.seconds_before is None else self.seconds_before + time.time() - self.started

    def chunk_source(self, train_ids, train_labels):
        """This rank's share of every chunk from state's next_chunk on, each with .index and .batch(b, size)."""
        config, ranks = self.config, self.ranks
        share = distributed.batch_share(config["CHUNK_SIZE"], config["BATCH_SIZE"], ranks) if ranks.active else None
        prepro = ra.prepro_matrices(config["PREPROCESSING"], train_ids, "train")
        # one run of chunks per input declaration
        bounds = input_spans(self.stages)
        spans = [(first, end) for first, end in zip(bounds[:-1], bounds[1:]) if end > self.state["next_chunk"]]
        runs = [ra.RandomChunks(train_ids, train_labels, subset="train", chunk_size=config["CHUNK_SIZE"],
                                num_chunks=end, seed=config["SEED"], augmentation=config["AUGMENTATION"],
                                colour_std=config["COLOUR_STD"], prepro=prepro,
                                start_chunk=max(first, self.state["next_chunk"]), num_workers=self.args.workers,
                                select=share, views=ra.input_views(self.input_at(first)))
                for first, end in spans]
        if self.args.data_on_device:
            log(f"holding {len(train_ids)} training images on {self.device}")
            cache = ta.DeviceImageCache.from_ids(train_ids, "train", self.device)
            labels = torch.from_numpy(np.asarray(train_labels, dtype=np.float32)).to(self.device)
            return (chunk for run in runs for chunk in device_chunks.planned_chunks(run, cache, labels))
        return (device_chunks.LoadedChunk(chunk, self.device) for run in runs for chunk in run)

    def trained_module(self):
        """The module to train with: DistributedDataParallel around the model for several ranks (made again after
        a stage changes which parameters train), else the model."""
        if not self.ranks.active:
            return self.model
        if self.wrapped is None:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        return self.wrapped

    def train_to_end(self, chunks, valid_views_for, valid_labels, mean_baseline):
        """Train on `chunks` (from chunk_source) to the end of the schedule, validating every VALIDATE_EVERY
        chunks against valid_views_for(input declaration) (N, V, 3, S, S) and valid_labels (N, 37). Returns "stopped" when a signal
        stopped it (after saving), "done" when every chunk is trained. An error stops it after saving the
        checkpoint at the last completed minibatch, so that a rerun loses nothing."""
        try:
            return self.train_chunks(chunks, valid_views_for, valid_labels, mean_baseline)
        except (checkpoints.CheckpointNotWritten, Diverged):
            raise  # nothing to save: the checkpoint on the disk is the last good one
        except Exception:
            self.save()
            config, state = self.config, self.state
            where = stopped_at(state["next_chunk"], state["next_batch"], config["CHUNK_SIZE"] // config["BATCH_SIZE"],
                               config["NUM_CHUNKS"])
            log(f"{where} by the error below; checkpoint saved. Once its cause is mended, run {resume_command()} "
                "to resume")
            raise

    def train_chunks(self, chunks, valid_views_for, valid_labels, mean_baseline):
        """train_to_end's loop."""
        config, state, ranks, device = self.config, self.state, self.ranks, self.device
        num_chunks, batch_size = config["NUM_CHUNKS"], config["BATCH_SIZE"]
        batches_per_chunk = config["CHUNK_SIZE"] // batch_size
        rank_batch_size = batch_size // ranks.world_size
        max_norm = getattr(self.model, "max_norm", None) is not None
        remaining = (num_chunks - state["next_chunk"]) * batches_per_chunk - state["next_batch"]
        self.model.train()
        with StopRequest() as stop, tqdm(total=remaining * batch_size, unit="img", unit_scale=True,
                                         dynamic_ncols=True, mininterval=1.0, disable=not ranks.is_main) as bar:
            for chunk in chunks:
                k = chunk.index
                normalise = k >= config["NUM_CHUNKS_NONORM"]
                start_time, first_batch, first_lr = time.time(), state["next_batch"], None
                for b in range(first_batch, batches_per_chunk):
                    if ranks.active:
                        torch.manual_seed(distributed.seed_for(config["SEED"], ranks.rank, k, b))
                    lr = self.set_learning_rate(k, b, batches_per_chunk)
                    first_lr = lr if first_lr is None else first_lr
                    trained = self.trained_module()
                    views, labels = chunk.batch(b, rank_batch_size)
                    try:
                        with precision.autocast_context(device, self.args.amp):
                            loss = train_batch(trained, self.optimizer, views, labels, normalise)
                    except NonFiniteStep as exc:
                        raise Diverged(f"training diverged in chunk {k + 1} of {num_chunks}, minibatch {b + 1} of "
                                       f"{batches_per_chunk}: {exc}; {self.kept()}") from None
                    loss, stop_now = distributed.mean_and_any(loss, stop.requested, ranks, device)
                    state["chunk_losses"].append(loss)
                    if max_norm and (b + 1) % MAX_NORM_EVERY == 0:
                        self.model.apply_max_norm()
                    state["next_batch"] = b + 1
                    bar.update(batch_size)
                    if stop_now and b + 1 < batches_per_chunk:
                        return self.stop(k, b + 1, batches_per_chunk)

                speed = (batches_per_chunk - first_batch) * batch_size / (time.time() - start_time)
                state["losses_train"].append(math.sqrt(np.mean(state["chunk_losses"])))
                state.update(next_chunk=k + 1, next_batch=0, chunk_losses=[])
                log(f"chunk {k + 1}/{num_chunks}  lr {lr_range(first_lr, lr)}  "
                    f"train RMSE {state['losses_train'][-1]:.6f}  "
                    f"{speed:.1f} img/s{'' if normalise else '  (no output normalisation)'}")
                if (k + 1) % config["VALIDATE_EVERY"] == 0 or k + 1 == num_chunks:
                    self.validate(valid_views_for(self.input_at(k)), valid_labels, mean_baseline)
                if distributed.mean_and_any(0.0, stop.requested, ranks, device)[1] and k + 1 < num_chunks:
                    return self.stop(k + 1, 0, batches_per_chunk)
        return "done"

    def validate(self, valid_views, valid_labels, mean_baseline):
        """Rank 0 scores the validation views, saves the checkpoint and draws the learning curve; the other
        ranks wait."""
        if self.ranks.is_main:
            state = self.state
            valid_rmse = submission.rmse(checkpoints.predict_views(self.model, valid_views, self.device, "validation"), valid_labels)
            state["losses_valid"].append((state["next_chunk"], valid_rmse))
            log(f"  validation RMSE {valid_rmse:.6f}  (predicting the training mean: {mean_baseline:.6f})")
            self.save()
            learning_curve.save(learning_curve.path(self.model_name), state["losses_train"], state["losses_valid"],
                                mean_baseline)
        distributed.barrier(self.ranks)

    def kept(self):
        """What a run that stops on an error without saving leaves, and what to do."""
        path = self.checkpoint_path
        kept = f"the last checkpoint, {path}, is kept as it was" if path.exists() else "no checkpoint was written"
        return f"{kept}; lower the learning rate or change --seed, and train again with --fresh"

    def stop(self, chunk, batch, batches_per_chunk):
        """Save the state reached (chunk and batch within it) and say how to resume; returns "stopped"."""
        self.save()
        log(f"{stopped_at(chunk, batch, batches_per_chunk, self.config['NUM_CHUNKS'])}; checkpoint saved. "
            f"Run the same command again to resume: {resume_command()}")
        distributed.barrier(self.ranks)
        return "stopped"


def input_spans(stage_list):
    """The chunk boundaries [0, ..., total] between runs of stages with the same input declaration."""
    bounds = stages.first_chunks(stage_list)
    return [bound for i, bound in enumerate(bounds)
            if i in (0, len(stage_list)) or stage_list[i].input != stage_list[i - 1].input]


def schedule_summary(config):
    """One line on the run's optimiser and stages."""
    first = stages.first_chunks([stages.Stage(**stage) for stage in config["STAGES"]])
    parts = [f"from chunk {start + 1}: lr {stage['lr']}" + ("" if stage["schedule"] == "constant" else f" {stage['schedule']}")
             for start, stage in zip(first, config["STAGES"])]
    count = len(config["STAGES"])
    return (f"{count} stage{'s' if count > 1 else ''} over {config['NUM_CHUNKS']} chunks, optimiser "
            f"{config['OPTIMIZER']}: " + "; ".join(parts))


def lr_range(first, last):
    """The learning rates of a chunk's first and last minibatches, as a log line shows them."""
    return f"{first:g}" if first == last else f"{first:g} to {last:g}"


def resume_command():
    """This run's command line without --fresh, which would start over instead of resuming."""
    return " ".join([Path(sys.argv[0]).name] + [arg for arg in sys.argv[1:] if arg != "--fresh"])


def stopped_at(chunk, batch, batches_per_chunk, num_chunks):
    """Where a stopped run stands, 1-based: chunk (0-based) is the chunk training goes on in, batch the minibatches
    of it already trained."""
    if batch == 0:
        return f"stopped after chunk {chunk} of {num_chunks}"
    return f"stopped in chunk {chunk + 1} of {num_chunks}, after minibatch {batch} of {batches_per_chunk}"
