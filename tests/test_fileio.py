import errno
import io
import json
import os
import pickle
import re

import pytest
import torch

from fakedetect.io import files
from fakedetect.io.files import CheckpointError, WriteError, load_checkpoint, save_checkpoint, save_figure, write_json


def test_atomic_write_replaces_whole_files_with_normal_permissions(tmp_path):
    write_json(tmp_path / "a.json", {"epoch": 1})
    write_json(tmp_path / "a.json", {"epoch": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"epoch": 2}
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o666 & ~files._UMASK
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    write_json(tmp_path / "a.json", {"epoch": 1})

    def disk_full(tmp):
        with open(tmp, "w") as f:
            f.write('{"epo')
        raise OSError(28, "No space left on device")
    with pytest.raises(WriteError, match="a.json: disk full writing it"):
        files.atomic_write(tmp_path / "a.json", disk_full)
    assert json.loads((tmp_path / "a.json").read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def free_space_line(path, folder):
    """The start of the one line a failed write of ``path`` gives, its free space on ``folder``'s filesystem."""
    return re.escape(f"{path}: disk full writing it (") + r"(\d+ bytes|\d+\.\d [KMG]iB)" + re.escape(f" free on {folder})")


def a_figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure()
    plt.imshow(torch.rand(300, 300).numpy())  # noise: a PNG far larger than the filesystem
    return fig


@pytest.mark.parametrize("kind", ["checkpoint", "json", "figure"])
def test_a_full_disk_is_one_line_naming_the_file_and_its_free_space(small_filesystems, kind):
    folder = small_filesystems.mount(size_kib=64)
    path = folder / f"run.{'pt' if kind == 'checkpoint' else kind}"
    small = {"checkpoint": lambda: save_checkpoint(path, {"epoch": 1}), "json": lambda: write_json(path, {"epoch": 1}),
             "figure": lambda: save_figure(a_figure(), path, dpi=10)}[kind]
    big = {"checkpoint": lambda: save_checkpoint(path, {"epoch": 2, "model": {"w": torch.rand(100_000)}}),
           "json": lambda: write_json(path, {"epoch": 2, "notes": "x" * 100_000}),
           "figure": lambda: save_figure(a_figure(), path, dpi=600)}[kind]
    small()
    before = path.read_bytes()
    with pytest.raises(WriteError) as failed:
        big()
    assert re.fullmatch(free_space_line(path, folder) + "; free some space and run the command again", str(failed.value))
    assert failed.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and [p.name for p in folder.iterdir()] == [path.name]  # no temporary file left


class FullDisk(io.RawIOBase):
    """A file on a disk with room for ``room`` bytes: a write beyond them fails as a full disk's does."""

    def __init__(self, room):
        self.room = room

    def writable(self):
        return True

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


def test_torchs_own_error_for_a_failed_write_becomes_a_write_error(tmp_path):
    def write(tmp):
        torch.save({"w": torch.zeros(1000)}, FullDisk(room=1000))  # torch turns the OSError into its RuntimeError
    with pytest.raises(WriteError, match=re.escape(f"{tmp_path / 'a.pt'}: disk full writing it (")) as failed:
        files.atomic_write(tmp_path / "a.pt", write)
    assert isinstance(failed.value.__cause__, RuntimeError) and "unexpected pos" in str(failed.value.__cause__)
    assert failed.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_torch_writing_to_a_path_on_a_full_disk_is_a_write_error_too(small_filesystems):
    folder = small_filesystems.mount(size_kib=64)  # torch's own file writer: its RuntimeError holds no OSError
    with pytest.raises(WriteError, match=re.escape(f"{folder / 'a.pt'}: cannot write it (torch.save failed; ")) as failed:
        files.atomic_write(folder / "a.pt", lambda tmp: torch.save({"w": torch.rand(100_000)}, tmp))
    assert isinstance(failed.value.__cause__, RuntimeError) and list(folder.iterdir()) == []


def test_another_os_error_is_one_line_in_its_own_words(tmp_path):
    (tmp_path / "taken").write_text("a file where a folder is needed")
    with pytest.raises(WriteError, match=re.escape(f"{tmp_path / 'taken' / 'a.json'}: cannot write it (File exists; ")):
        write_json(tmp_path / "taken" / "a.json", {"epoch": 1})


def test_other_errors_of_the_writer_are_not_taken_for_write_errors(tmp_path):
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json(tmp_path / "a.json", {"epoch": object()})
    with pytest.raises(RuntimeError, match="not a write"):
        files.atomic_write(tmp_path / "a.json", lambda tmp: (_ for _ in ()).throw(RuntimeError("not a write")))
    assert list(tmp_path.iterdir()) == []


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"model": RunsCode()}, f)
    with pytest.raises(CheckpointError, match="evil.pt: not a loadable checkpoint.*refused by the safe loader"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned.txt").exists()


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.ones(3)}})
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt: not a loadable checkpoint") as refused:
        load_checkpoint(tmp_path / "truncated.pt")
    assert "central directory" in str(refused.value) and "likelihood" not in str(refused.value)  # torch's advice cut
    save_checkpoint(tmp_path / "other.pt", {"weights": 1})
    with pytest.raises(CheckpointError, match=r"other.pt: not a checkpoint of this toolkit; expected .*'model'"):
        load_checkpoint(tmp_path / "other.pt")
    assert torch.equal(load_checkpoint(tmp_path / "good.pt")["model"]["w"], torch.ones(3))


def test_a_torch_saved_object_is_refused_too(tmp_path):
    torch.save({"model": RunsCode()}, tmp_path / "evil2.pt")
    with pytest.raises(CheckpointError, match="evil2.pt: .*refused by the safe loader.*posix.system"):
        load_checkpoint(tmp_path / "evil2.pt")


def test_an_unreadable_file_is_one_line_naming_it(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "locked.pt", {"model": {"w": torch.ones(3)}})

    def permission_denied(path, mode="r"):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(files, "open", permission_denied, raising=False)
    with pytest.raises(CheckpointError, match=r"locked.pt: cannot read the checkpoint \(Permission denied\); pass"):
        load_checkpoint(tmp_path / "locked.pt")
