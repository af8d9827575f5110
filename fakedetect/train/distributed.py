"""Training on several processes launched by torchrun: one process (rank) per GPU, or several on the CPU.

    torchrun --nproc_per_node=4 train_main.py -m XceptionBased -d ffpp --batch-size 128

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them everything here is a no-op and a run is the
single-process run it always was. Every rank draws the same epoch order and augmentations from the same
seed and trains on its own part of each global batch (``--batch-size`` is the global batch), so the
gradient DistributedDataParallel averages is the one of the whole batch. Evaluation gives each rank a
consecutive block of the split and gathers the scores in the split's order, so the metrics are those of
one process. Rank 0 alone prints, holds the run's lock and writes its files. ``Ranks`` (this process's
part of each batch) is data.batches'.
"""
import contextlib
import datetime
import os

import torch

from fakedetect.data.batches import SINGLE, Ranks

DECODE_TIMEOUT = datetime.timedelta(hours=6)  # ranks wait at a barrier while rank 0 decodes a large dataset


def from_environment():
    """The Ranks torchrun gave this process (SINGLE when not launched by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def device_of(ranks, device):
    """The device of this rank: its own GPU (``cuda:LOCAL_RANK``) when training on CUDA."""
    device = torch.device(device)
    if ranks.world > 1 and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device


@contextlib.contextmanager
def process_group(ranks, device):
    """Join the run's other processes (NCCL on GPUs, gloo on the CPU) for the block; nothing when single."""
    if ranks.world == 1:
        yield
        return
    import torch.distributed as dist

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=DECODE_TIMEOUT,
                            device_id=device if device.type == "cuda" else None)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(ranks):
    """Wait until every rank gets here."""
    if ranks.world > 1:
        torch.distributed.barrier()


@contextlib.contextmanager
def main_rank_first(ranks):
    """Run the block on rank 0 first, then on the others (rank 0 writes the decode cache they then map)."""
    if not ranks.main:
        barrier(ranks)
    yield
    if ranks.main:
        barrier(ranks)


def sum_over_ranks(tensor, ranks):
    """``tensor`` summed over all ranks (in place; every rank gets the sum)."""
    if ranks.world > 1:
        torch.distributed.all_reduce(tensor)
    return tensor


def gather_parts(part, ranks, total):
    """Every rank's ``part`` (its rows of a split of ``total`` rows, cut by ``Ranks.part``) concatenated in
    rank order: the split's rows in the split's order, on every rank."""
    if ranks.world == 1:
        return part
    sizes = [Ranks(rank, ranks.world).part(0, total) for rank in range(ranks.world)]
    sizes = [end - begin for begin, end in sizes]
    padded = part.new_zeros((max(sizes), *part.shape[1:]))
    padded[:len(part)] = part
    gathered = [torch.empty_like(padded) for _ in sizes]
    torch.distributed.all_gather(gathered, padded)
    return torch.cat([rows[:size] for rows, size in zip(gathered, sizes)])
