"""Small helpers for running a script under `torchrun --nproc_per_node=N` (one process per rank).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process's environment; without them everything here
describes a single process (rank 0 of 1) and no process group is created. The backend is NCCL when the
ranks train on CUDA devices (rank r on cuda:LOCAL_RANK) and gloo on the CPU.
"""
import datetime
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

import load_data

# Ranks wait at barriers while rank 0 validates and writes files; that can take long on a CPU.
BARRIER_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks: rank in 0..world_size - 1, local_rank on this machine."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self):
        """True when running as one of several processes with a process group."""
        return self.world_size > 1

    @property
    def is_main(self):
        """Rank 0 alone prints and writes files."""
        return self.rank == 0


def ranks_from_environment(environ=None):
    """Ranks described by torchrun's environment variables; a single process when they are absent."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ or "RANK" not in environ:
        return Ranks()
    return Ranks(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", 0)))


def rank_device(device, ranks):
    """The device this rank computes on: cuda:LOCAL_RANK when `device` (torch.device) is CUDA and several
    ranks run, else `device` unchanged."""
    if ranks.active and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device


def start(device, ranks):
    """Join the process group (NCCL on CUDA, gloo otherwise) when several ranks run; no-op for one."""
    if not ranks.active or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)


def run_rank(work, ranks, expected_errors):
    """Call `work()` as this rank's whole job and leave the process group afterwards; returns the exit status:
    0, or 1 after printing an `expected_errors` exception (a class or a tuple of them), or an OSError a user can
    cause (load_data.user_error_message), as the scripts' one-line `error: ...` (naming the rank when there are
    several). After a completed job every rank first waits for the others: a rank that tore down its connections
    while rank 0 was still writing files was seen to abort at exit (SIGABRT), failing the whole torchrun. After an
    error the ranks leave at once."""
    completed = False
    try:
        work()
        completed = True
        return 0
    except Exception as exc:
        message = str(exc) if isinstance(exc, expected_errors) else load_data.user_error_message(exc)
        if message is None:
            raise
        print(f"error: {f'rank {ranks.rank}: ' if ranks.active else ''}{message}", file=sys.stderr)
        return 1
    finally:
        if ranks.active and dist.is_initialized():
            if completed:
                dist.barrier()
            dist.destroy_process_group()


def barrier(ranks):
    if ranks.active:
        dist.barrier()


def mean_and_any(value, flag, ranks, device):
    """(mean of the ranks' float `value`, whether any rank's `flag` is set), in one all-reduce."""
    if not ranks.active:
        return value, bool(flag)
    summed = torch.tensor([float(value), float(bool(flag))], dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    total, flags = summed.tolist()
    return total / ranks.world_size, flags > 0


def check_batch_split(batch_size, ranks):
    """Raise ValueError when a minibatch of batch_size images cannot be split evenly over the ranks."""
    if batch_size % ranks.world_size:
        raise ValueError(f"the minibatch of {batch_size} images cannot be split evenly over {ranks.world_size} "
                         f"processes; use a number of processes that divides {batch_size}")


def batch_share(chunk_size, batch_size, ranks):
    """Indices into a chunk of chunk_size images of this rank's share of every full minibatch: images
    [r * b, (r + 1) * b) of each batch of batch_size, b = batch_size / world_size; int64
    (batches * b,), in batch order. Raises ValueError when batch_size is not divisible by world_size."""
    check_batch_split(batch_size, ranks)
    share = batch_size // ranks.world_size
    batches = chunk_size // batch_size
    starts = np.arange(batches)[:, None] * batch_size + ranks.rank * share
    return (starts + np.arange(share)[None]).reshape(-1).astype(np.int64)


def rank_positions(count, ranks):
    """Positions r, r + N, r + 2N, ... of count items: this rank's shard (all of them for one process)."""
    return np.arange(ranks.rank, count, ranks.world_size, dtype=np.int64)


def gather_rows(rows, count, ranks):
    """Reassemble arrays sharded by rank_positions: rows (m, ...) of this rank -> on rank 0 the (count, ...)
    array in the original order; None on the other ranks. One process: rows unchanged."""
    if not ranks.active:
        return rows
    pieces = [None] * ranks.world_size if ranks.is_main else None
    dist.gather_object(np.asarray(rows), pieces, dst=0)
    if not ranks.is_main:
        return None
    full = np.empty((count,) + pieces[0].shape[1:], dtype=pieces[0].dtype)
    for rank, piece in enumerate(pieces):
        full[rank::ranks.world_size] = piece
    return full


def seed_for(*keys):
    """A 63-bit torch seed from integer keys (e.g. seed, rank, chunk, batch)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))
