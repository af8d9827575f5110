import json
import os
import pickle

import pytest
import torch

import fileio
from fileio import CheckpointError, load_checkpoint, save_checkpoint, write_json


def test_atomic_write_replaces_whole_files_with_normal_permissions(tmp_path):
    write_json(tmp_path / "a.json", {"epoch": 1})
    write_json(tmp_path / "a.json", {"epoch": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"epoch": 2}
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o666 & ~fileio._UMASK
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    write_json(tmp_path / "a.json", {"epoch": 1})

    def disk_full(tmp):
        with open(tmp, "w") as f:
            f.write('{"epo')
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError, match="No space left"):
        fileio.atomic_write(tmp_path / "a.json", disk_full)
    assert json.loads((tmp_path / "a.json").read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


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
    monkeypatch.setattr(fileio, "open", permission_denied, raising=False)
    with pytest.raises(CheckpointError, match=r"locked.pt: cannot read the checkpoint \(Permission denied\); pass"):
        load_checkpoint(tmp_path / "locked.pt")

