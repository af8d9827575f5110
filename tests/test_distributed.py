"""torchrun: each rank's share of the epoch, evaluation gathered across processes, and whole 2-process runs."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing
from torch.utils.data import BatchSampler, RandomSampler

from fakedetect.config.recipe import recipe_named
from fakedetect.data import batches
from fakedetect.data.batches import RankBatches, Ranks, balanced_sample_weights, make_batches
from fakedetect.data.cache import DecodedFaces, decode_dataset
from fakedetect.data.folders import FacesDataset
from fakedetect.io.runs import Run
from fakedetect.metrics import binary_metrics
from fakedetect.models.simplenet import SimpleNet
from fakedetect.train import distributed
from fakedetect.train.trainer import Runtime, Trainer

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("start, stop", [(0, 0), (0, 1), (5, 12), (0, 23), (10, 13)])
def test_the_ranks_parts_cover_the_positions_once_in_order(world, start, stop):
    parts = [Ranks(rank, world).part(start, stop) for rank in range(world)]
    covered = [position for begin, end in parts for position in range(begin, end)]
    assert covered == list(range(start, stop))
    sizes = [end - begin for begin, end in parts]
    assert max(sizes) - min(sizes) <= 1


def numbered_split(count):
    """Image i is filled with the value i, so a batch says which images it holds."""
    images = torch.arange(count, dtype=torch.uint8)[:, None, None, None].expand(count, 3, 256, 256).contiguous()
    return DecodedFaces(images, torch.arange(count) % 2, [f"{i}.png" for i in range(count)], "numbered")


def epoch_batches(decoded, ranks, train=True, sample_weights=None):
    """The (images, labels) batches of one epoch that ``ranks`` trains on (pixel values kept), each rank seeded alike."""
    batches = make_batches(decoded, 5, "cpu", (0.0,) * 3, (1 / 255,) * 3, train, torch.Generator().manual_seed(0),
                           sample_weights=sample_weights, ranks=ranks)
    return list(batches), len(batches)


@pytest.mark.parametrize("count, world", [(23, 2), (23, 3), (20, 2), (21, 2)])
@pytest.mark.parametrize("weighted", [False, True])
def test_each_rank_trains_on_its_part_of_every_global_batch(count, world, weighted):
    decoded = numbered_split(count)
    weights = balanced_sample_weights(decoded.labels) if weighted else None
    single, _ = epoch_batches(decoded, batches.SINGLE, sample_weights=weights)
    per_rank = [epoch_batches(decoded, Ranks(rank, world), sample_weights=weights) for rank in range(world)]
    lengths = {length for _, length in per_rank}
    kept = len(single) if count % 5 == 0 or count % 5 >= world else len(single) - 1  # a last batch < world is left out
    assert lengths == {kept} and all(len(batches) == kept for batches, _ in per_rank)
    for step in range(kept):  # the ranks' parts, in rank order, are the one-process batch, augmentations included
        images = torch.cat([batches[step][0] for batches, _ in per_rank])
        labels = torch.cat([batches[step][1] for batches, _ in per_rank])
        assert torch.equal(images, single[step][0]) and torch.equal(labels, single[step][1])


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_evaluates_a_block_and_together_they_cover_the_split_once(world):
    decoded = numbered_split(23)
    seen = []
    for rank in range(world):
        batches, _ = epoch_batches(decoded, Ranks(rank, world), train=False)
        seen += [int(value) for images, _ in batches for value in images[:, 0, 0, 0]]
    assert seen == list(range(23))


@pytest.mark.parametrize("world", [2, 3])
def test_the_per_item_path_cuts_the_same_global_batches(world):
    def sampler():
        return RandomSampler(range(23), generator=torch.Generator().manual_seed(0))
    single = list(BatchSampler(sampler(), 5, drop_last=False))
    parts = [list(RankBatches(sampler(), 5, Ranks(rank, world))) for rank in range(world)]
    assert all(len(rank_parts) == len(single) for rank_parts in parts)
    for step, batch in enumerate(single):
        assert sum((rank_parts[step] for rank_parts in parts), []) == batch


def test_a_rank_gathers_its_batches_from_the_memory_mapped_cache_in_the_epochs_order(tiny_fakes, tmp_path):
    decoded = decode_dataset(FacesDataset(tiny_fakes / "val"), cache_dir=tmp_path, progress=False)
    assert decoded.mapped_from is not None and decoded.mapped_from.parent == tmp_path
    in_memory = DecodedFaces(decoded.images.clone(), decoded.labels, decoded.files, decoded.root_path)
    for ranks in (batches.SINGLE, Ranks(1, 2)):
        mapped, _ = epoch_batches(decoded, ranks)
        held, _ = epoch_batches(in_memory, ranks)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(mapped, held))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def evaluation_trainer(weights, split, work, ranks):
    model = SimpleNet()
    model.load_state_dict(torch.load(weights, weights_only=True))
    run = Run("SimpleNet", "toy", "Adam", {"lr": 1e-4}, out_dir=work / "out", checkpoint_dir=work / "ck")
    recipe = recipe_named("course", batch_size=2)  # evaluation batches of 4: several per rank
    return Trainer(model, (split, split, split), run, recipe, Runtime(progress=False, ranks=ranks),
                   normalization=((0.5,) * 3, (0.5,) * 3))


def evaluate_on_a_rank(rank, world, port, weights, split_folder, per_item, work, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ranks = distributed.from_environment()
    split = FacesDataset(split_folder) if per_item else decode_dataset(FacesDataset(split_folder), None, progress=False)
    with distributed.process_group(ranks, "cpu"):
        result = evaluation_trainer(weights, split, Path(work), ranks).evaluate(split)
    if ranks.main:
        torch.save({key: result[key] for key in ("scores", "labels", "auc", "loss", "accuracy")}, results)


@pytest.mark.slow
@pytest.mark.parametrize("per_item", [False, True])
def test_one_checkpoint_evaluated_by_two_processes_scores_as_by_one(tiny_fakes, tmp_path, per_item):
    torch.manual_seed(3)
    weights = tmp_path / "weights.pt"
    torch.save(SimpleNet().state_dict(), weights)  # random weights: scores spread out, the AUC far from 0 and 1
    split_folder = tiny_fakes / "test"
    split = FacesDataset(split_folder) if per_item else decode_dataset(FacesDataset(split_folder), None, progress=False)
    alone = evaluation_trainer(weights, split, tmp_path, batches.SINGLE).evaluate(split)
    torch.multiprocessing.spawn(evaluate_on_a_rank, nprocs=2, args=(2, free_port(), weights, split_folder, per_item,
                                                                    str(tmp_path), tmp_path / "gathered.pt"))
    gathered = torch.load(tmp_path / "gathered.pt", weights_only=False)
    assert np.array_equal(gathered["labels"], alone["labels"])  # the split's order
    assert np.allclose(gathered["scores"], alone["scores"], atol=1e-6)
    assert 0.05 < alone["auc"] < 0.95 and abs(gathered["auc"] - alone["auc"]) < 1e-9
    assert binary_metrics(gathered["labels"], gathered["scores"])["auc"] == pytest.approx(alone["auc"], abs=1e-9)
    assert gathered["loss"] == pytest.approx(alone["loss"], rel=1e-6) and gathered["accuracy"] == alone["accuracy"]


def training_command(dataset, work, processes, epochs=2):
    flags = ["-d", str(dataset), "-o", "Adam", "--lr", "0.0005", "-b", "8", "-e", str(epochs), "--device", "cpu",
             "--checkpoint-interval", "0", "--out-dir", str(work / "out"), "--checkpoint-dir", str(work / "ck"),
             "--cache-dir", str(work / "cache")]
    if processes == 1:
        return [sys.executable, str(ROOT / "train_main.py"), *flags]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            str(ROOT / "train_main.py"), *flags]


def quiet_environment():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_two_process_run_matches_one_process_and_only_rank_0_writes(tiny_fakes, tmp_path):
    one = subprocess.run(training_command(tiny_fakes, tmp_path / "one", 1), capture_output=True, text=True,
                         env=quiet_environment(), check=True)
    two = subprocess.run(training_command(tiny_fakes, tmp_path / "two", 2), capture_output=True, text=True,
                         env=quiet_environment())
    assert two.returncode == 0, two.stderr[-2000:]
    assert [line for line in two.stdout.splitlines() if line.startswith("epoch ")] == \
        [line for line in two.stdout.splitlines() if line.startswith("epoch ")][:2]  # one line per epoch
    assert sum(line.startswith("epoch 1/2:") for line in two.stdout.splitlines()) == 1
    assert sum(line.startswith("train: 24 images decoded") for line in two.stdout.splitlines()) == 1
    for folder in ("out", "ck"):
        assert sorted(p.name for p in (tmp_path / "two" / folder).iterdir()) == \
            sorted(p.name for p in (tmp_path / "one" / folder).iterdir())
    history = {name: json.loads((tmp_path / name / "out" / "tiny_fakes_SimpleNet_Adam.json").read_text())
               for name in ("one", "two")}
    assert history["two"]["config"]["processes"] == 2 and history["one"]["config"]["processes"] == 1
    assert np.allclose(history["two"]["val_auc"], history["one"]["val_auc"], atol=0.01)
    assert np.allclose(history["two"]["train_loss"], history["one"]["train_loss"], atol=1e-3)
    assert "epoch 2/2:" in one.stdout


def process_states():
    """{pid: (parent pid, state letter)} of this machine's processes, from /proc."""
    states = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        states[int(stat.parent.name)] = (int(fields[1]), fields[0])
    return states


def children_of(parent):
    return sorted(pid for pid, (ppid, _) in process_states().items() if ppid == parent)


def wait_until_gone(pids, timeout=30):
    """Wait until every one of ``pids`` has ended (a zombie counts as ended)."""
    deadline = time.time() + timeout
    while time.time() < deadline and any(process_states().get(pid, (0, "Z"))[1] != "Z" for pid in pids):
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_on_one_process(tiny_fakes, tmp_path):
    command = training_command(tiny_fakes, tmp_path, 2, epochs=3)
    json_path = tmp_path / "out" / "tiny_fakes_SimpleNet_Adam.json"
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=quiet_environment(),
                           start_new_session=True)
    deadline = time.time() + 120
    while not json_path.exists() and time.time() < deadline and job.poll() is None:
        time.sleep(0.01)
    assert job.poll() is None, "the run ended before the kill point"
    ranks = children_of(job.pid)  # torchrun starts each rank in a session of its own
    assert len(ranks) == 2
    for pid in [job.pid, *ranks]:  # torchrun and both ranks at once
        os.kill(pid, signal.SIGKILL)
    job.wait()
    wait_until_gone(ranks)  # the ranks hold the run's lock until they are gone
    done = len(json.loads(json_path.read_text())["train_loss"])
    assert 1 <= done < 3
    resumed = subprocess.run(training_command(tiny_fakes, tmp_path, 1, epochs=3) + ["--resume"], capture_output=True,
                             text=True, env=quiet_environment())
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming tiny_fakes_SimpleNet_Adam after epoch" in resumed.stdout
    history = json.loads(json_path.read_text())
    assert len(history["train_loss"]) == 3 and history["config"]["processes"] == 2
    assert history["resumes"][-1]["changed"]["processes"] == 1  # the JSON says the resume changed it
    assert not list((tmp_path / "ck").glob(".*.tmp"))


@pytest.mark.parametrize("flags, ranks, message", [
    (["--sync-bn", "--device", "cpu"], Ranks(0, 2), "--sync-bn: SyncBatchNorm runs on CUDA GPUs only; on the CPU drop the flag"),
    (["-b", "3", "--device", "cpu"], Ranks(1, 4), "--batch-size 3: the global batch is split across the 4 processes, "
                                                  "so it must be at least 4")])
def test_flags_that_do_not_fit_the_processes_are_one_line(tiny_fakes, tmp_path, capsys, flags, ranks, message):
    from fakedetect.cli import train as train_main
    with pytest.raises(SystemExit) as exit_code:
        train_main.parse_args(["-d", str(tiny_fakes), "--out-dir", str(tmp_path / "out"), *flags], ranks)
    assert exit_code.value.code == 2
    [error] = capsys.readouterr().err.strip().splitlines()
    assert f": error: {message}" in error
    assert not (tmp_path / "out").exists()
