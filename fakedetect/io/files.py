"""Crash-safe file writes and safe loading of checkpoints and weights files.

Every file the toolkit writes goes to a temporary file in the target folder and is
renamed into place, so a reader never sees half a file and a failed write leaves the
previous file intact and no temporary file behind; the failure is a WriteError, one line naming
the file, the cause (disk full, I/O error, ...) and the free space on its filesystem.
Checkpoints and weights are always loaded with ``weights_only=True``.
"""
import contextlib
import errno
import glob
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import torch


_UMASK = os.umask(0)
os.umask(_UMASK)


TRAINED_CHECKPOINT_FIX = "pass a .pt file written by train_main.py (train a model first)"


WRITE_FAILURES = {  # errno: (what happened, what to do)
    errno.ENOSPC: ("disk full", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota"),
    errno.EFBIG: ("file too large for its filesystem", "write to another filesystem"),
    errno.EIO: ("I/O error", "check the disk (or its connection)"),
    errno.EROFS: ("read-only filesystem", "write to another folder"),
    errno.EACCES: ("permission denied", "make the folder writable or write to another folder"),
}


class CheckpointError(RuntimeError):
    """A checkpoint or weights file that is missing, unreadable or of the wrong kind."""


class WriteError(OSError):
    """A file that could not be written. ``problem`` names the file, the cause and the free space on its
    filesystem, ``fix`` what to do; ``str`` is both, with "and run the command again"."""

    def __init__(self, code, problem, fix):
        super().__init__(code, problem)
        self.problem, self.fix = problem, fix

    def __str__(self):
        return f"{self.problem}; {self.fix} and run the command again"


def _io_failure(error):
    """The OSError behind a failed write: ``error`` itself, or the one ``torch.save`` turned into its
    RuntimeError ("[enforce fail at inline_container.cc] unexpected pos ..."); ``error`` itself for
    such a RuntimeError without one (torch writing to a path); None for any other error."""
    if isinstance(error, OSError):
        return error
    if isinstance(error, RuntimeError) and "inline_container" in str(error):
        cause = error.__cause__ or error.__context__
        return cause if isinstance(cause, OSError) else error
    return None


def _free_space(path):
    """``"12 KiB free on /mnt/data"`` for the filesystem that holds ``path`` (or its nearest existing folder)."""
    folder = Path(os.path.abspath(path)).parent
    while not folder.is_dir():
        folder = folder.parent
    mount = folder
    while not os.path.ismount(mount):
        mount = mount.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"free space on {mount} unknown"
    return f"{_size(free)} free on {mount}"


def _size(count):
    """``count`` bytes as ``"512 bytes"``, ``"12.0 KiB"``, ``"3.4 GiB"``."""
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if count >= 1024 ** power:
            return f"{count / 1024 ** power:.1f} {unit}"
    return f"{count} bytes"


def _write_error(path, failure):
    """The WriteError for ``path`` given the OSError (or torch RuntimeError) ``failure`` of writing it."""
    code = failure.errno if isinstance(failure, OSError) else None
    if code in WRITE_FAILURES:
        what, fix = WRITE_FAILURES[code]
        return WriteError(code, f"{path}: {what} writing it ({_free_space(path)})", fix)
    reason = failure.strerror if isinstance(failure, OSError) and failure.strerror else "torch.save failed"
    return WriteError(code, f"{path}: cannot write it ({reason}; {_free_space(path)})", "check the folder and the disk")


def atomic_write(path, write):
    """Call ``write(tmp_path)`` and rename the temporary file onto ``path``; a failure to write
    (an OSError, or torch's RuntimeError for one) removes the temporary file and raises WriteError."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        failure = _io_failure(error)
        if failure is None:
            raise
        raise _write_error(path, failure) from error


class SymlinkLoopError(RuntimeError):
    """A path whose symbolic links point in a circle."""


def _resolved(path):
    try:
        return Path(path).resolve()
    except RuntimeError:  # Path.resolve raises it on a symlink loop
        raise SymlinkLoopError(f"{path}: a symbolic link loop; fix or remove the link") from None


def _input_paths(item):
    """The resolved paths an input names: itself (or a glob's matches) and, inside a folder, every symbolic
    link's target (a linked file is as much an input as the folder). A named input that is a link loop is
    reported; a loop inside a folder names no file and is passed over, as training passes over it."""
    matches = sorted(glob.glob(str(item), recursive=True)) if glob.has_magic(str(item)) else [item]
    found, seen = [], set()
    pending = [_resolved(match) for match in matches]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        found.append(path)
        if path.is_dir():
            for folder, subfolders, files in os.walk(path):
                for name in subfolders + files:
                    entry = Path(folder) / name
                    if entry.is_symlink():
                        try:
                            pending.append(_resolved(entry))
                        except SymlinkLoopError:
                            pass
    return found


class Inputs:
    """A command's inputs, resolved once (``_input_paths``: walking folders is the costly part) however
    many of its outputs are checked against them."""

    def __init__(self, items):
        self.items, self._resolved = list(items), None

    def __iter__(self):
        """(item, the path it names itself or None for a glob, every path it stands for), per input."""
        if self._resolved is None:
            self._resolved = [(item, None if glob.has_magic(str(item)) else _resolved(item), _input_paths(item))
                              for item in self.items]
        return iter(self._resolved)


def output_problem(path, inputs=(), folder=False, whole=False):
    """Why ``path`` cannot take a command's output (one phrase), or None: it is one of the ``inputs``
    (files, folders or glob patterns; the files and links inside folders count), lies inside an input
    folder or, for an output folder the command fills ``whole`` (and may clear), contains an input; it is
    a folder where a file is meant (or the reverse), or its folder cannot be created. Checked without
    creating anything, so a command fails before its work. ``inputs``: a list, or ``Inputs`` to resolve
    them once for several outputs."""
    path = Path(path)
    target = _resolved(path)
    for item, named, paths in inputs if isinstance(inputs, Inputs) else Inputs(inputs):
        for found in paths:
            if target == found:
                what = f"this command's input {item}" if found == named else \
                    f"{found}, an input of this command (through {item})"
                return f"is {what}, which would be overwritten; choose another path"
            if found.is_dir() and found in target.parents:
                return f"lies inside the input folder {item}, which must stay as it is; choose a path outside it"
            if whole and target in found.parents:
                return f"contains this command's input {item}, which must stay as it is; choose another path"
    if folder and path.exists() and not path.is_dir():
        return "is a file; give a folder"
    if not folder and path.is_dir():
        return "is a folder; give a file name"
    existing = Path(os.path.abspath(path if folder else path.parent))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create the folder ({existing} is a file); choose another path"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot create or write the folder ({existing}: not writable, or a read-only filesystem); choose another path"
    return None


def check_output_path(parser, flag, path, inputs=(), folder=False, whole=False):
    """``parser.error`` (exit 2) naming ``flag`` when ``path`` cannot take the output (``output_problem``)."""
    if path is None:
        return
    try:
        problem = output_problem(path, inputs, folder, whole)
    except SymlinkLoopError as error:
        problem = f"cannot be checked: {error}"
    if problem:
        parser.error(f"{flag} {path}: {problem}")


def check_distinct_outputs(parser, outputs):
    """``parser.error`` when two of ``outputs`` (flag, path) of one command are the same file."""
    seen = {}
    for flag, path in outputs:
        if path is None:
            continue
        target = os.path.realpath(path)
        if target in seen:
            parser.error(f"{flag} {path}: is also {seen[target]}'s output; give each output its own path")
        seen[target] = flag


def _synced_write(path, mode, dump):
    """Atomically write ``path`` with ``dump(file)``, flushed to disk before the rename."""
    def write(tmp):
        with open(tmp, mode) as f:
            dump(f)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically."""
    _synced_write(path, "w", lambda f: json.dump(data, f, indent=2))


def save_checkpoint(path, checkpoint):
    """``torch.save`` a dict of tensors and plain values, atomically."""
    _synced_write(path, "wb", lambda f: torch.save(checkpoint, f))


def save_figure(fig, path, dpi=150):
    """Save a matplotlib figure as PNG, atomically."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"))


def _load_failure_reason(error):
    """One readable line of why torch.load refused a file."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        detail = next((line for line in lines[1:] if "nsupported" in line), "")
        detail = detail.replace("WeightsUnpickler error: ", "").split(" was not an allowed global")[0]
        return ("refused by the safe loader (weights_only=True): it holds objects other than tensors and plain "
                f"values, and unpickling them could run code{'; ' + detail if detail else ''}")
    return (lines[0].split(". ")[0] if lines else type(error).__name__)[:200]  # torch adds advice sentences


def load_tensors(path, kind, fix):
    """``torch.load`` a file on the CPU without unpickling code (``weights_only=True``).

    Raises CheckpointError with one line naming the file, the ``kind`` of file expected and
    the ``fix`` when it is missing, unreadable, not written by ``torch.save``, truncated or
    refused by the safe loader.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {kind} not found; {fix}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the {kind} ({error.strerror or error}); {fix}") from None
    if head != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip file (or, long ago, a pickle)
        raise CheckpointError(f"{path}: not a loadable {kind} (not a file written by torch.save); {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: not a loadable {kind} ({_load_failure_reason(error)}); {fix}") from None


def load_safetensors(path, fix):
    """The tensors of a ``.safetensors`` file (a format that holds tensors only, so nothing can run
    code); CheckpointError naming the file and ``fix`` when it is missing or not such a file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found; {fix}")
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(f"{path}: reading .safetensors needs the safetensors package: "
                              "pip install safetensors") from None
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # safetensors' own SafetensorError, or an OSError
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a loadable .safetensors file ({reason}); {fix}") from None


def load_weights_file(path, fix, wrappers=("state_dict",)):
    """Load a state dict (names to tensors) with ``load_tensors``, or ``load_safetensors`` for a
    ``.safetensors`` file, taken out of the first of the ``wrappers`` keys that holds a dict;
    CheckpointError naming the file and ``fix`` when the file is not loadable or holds no state dict."""
    if Path(path).suffix == ".safetensors":
        return load_safetensors(path, fix)
    state = load_tensors(path, "weights file", fix)
    wrapper = next((key for key in wrappers if isinstance(state, dict) and isinstance(state.get(key), dict)), None)
    state = state[wrapper] if wrapper else state
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f"{path}: not a state dict (names to tensors); {fix}")
    return state


def state_dict_mismatch(error):
    """The telling line of ``load_state_dict``'s RuntimeError (missing, unexpected or mis-shaped keys)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if line.startswith(("Missing key", "Unexpected key", "size mismatch"))]
    line = (telling or lines or [type(error).__name__])[0]
    return line if len(line) <= 160 else line[:160].rstrip(", ") + " ..."


def load_checkpoint(path, required_keys=("model",), fix=TRAINED_CHECKPOINT_FIX):
    """Load a checkpoint dict with ``load_tensors``; CheckpointError naming the file and ``fix``
    when it is not loadable or lacks ``required_keys``."""
    checkpoint = load_tensors(path, "checkpoint", fix)
    require_keys(checkpoint, path, required_keys, fix)
    return checkpoint


def require_keys(checkpoint, path, required_keys, fix=TRAINED_CHECKPOINT_FIX):
    """CheckpointError naming ``path`` and ``fix`` unless ``checkpoint`` is a dict with ``required_keys``."""
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in required_keys):
        raise CheckpointError(f"{path}: not a checkpoint of this toolkit; expected a dict with keys "
                              f"{list(required_keys)}; {fix}")


def read_json(path, kind, fix):
    """A JSON file's content; CheckpointError naming ``path``, the ``kind`` expected and ``fix`` when it is
    missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {kind} not found; {fix}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable {kind} ({str(error).splitlines()[0][:120]}); {fix}") from None


def _lock_holder_alive(holder):
    """Whether the process a lock file names may still run: on another host we cannot tell, so yes."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return not _is_zombie(int(holder["pid"]))


def _is_zombie(pid):
    """Whether ``pid`` has ended but not been reaped (a killed torchrun's ranks, whose parent is gone too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _age_seconds(path):
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


_HELD_HERE = set()  # lock files this process holds: holding one again is a no-op


@contextlib.contextmanager
def held_lock(path, refusal):
    """Hold the lock file ``path`` (created exclusively, holding this pid, host and start time) for the
    ``with`` block. When a live process holds it, raise ``refusal(holder)``, an exception for the text that
    describes the holder; a lock whose process is gone (same host) is stale and taken over. Reentrant
    within a process."""
    path = Path(path)
    if path.resolve() in _HELD_HERE:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}  # being written now, or half written by a process killed at that moment
            unreadable = not isinstance(holder, dict) or not holder
            if unreadable and _age_seconds(path) > 10 or not unreadable and not _lock_holder_alive(holder):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            described = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
                         if not unreadable else "a process that is writing it now")
            raise refusal(described) from None
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f)
        break
    else:
        raise refusal("another process that took it over at the same moment")
    _HELD_HERE.add(path.resolve())
    try:
        yield path
    finally:
        _HELD_HERE.discard(path.resolve())
        try:
            if json.loads(path.read_text()).get("pid") == mine["pid"]:
                path.unlink()
        except (OSError, ValueError, AttributeError):
            pass
