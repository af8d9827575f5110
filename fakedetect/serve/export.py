"""Export a trained detector to ONNX or TorchScript, to score images without this toolkit.

    python export.py checkpoints/demo_fakes_SimpleNet_AdamW.pt --format onnx -o detector.onnx
    python export.py checkpoints/demo_fakes_SimpleNet_AdamW.pt --format torchscript -o detector.torchscript.pt
    python predict.py detector.onnx photo.jpg     # scores with onnxruntime, as with the checkpoint

The exported model takes a batch of RGB images channels first, N x 3 x H x W, and returns
P(fake), a float32 vector of N: the checkpoint's input normalization is inside it. Feed the
images as training saw them, resized to 256 x 256 (SimpleNet takes no other size; the other
detectors take any H and W, but were trained at 256). Pixel type:

- TorchScript takes uint8 (0..255) or float (0..1) images and tells them apart by dtype;
- ONNX fixes its input's type in the file: uint8 (``--input uint8``, the default) or float32
  in 0..1 (``--input float32``); a runtime refuses the other type.

The file carries the checkpoint's decision threshold and class names as metadata, every value
JSON-encoded: ``threshold`` (call an image fake when P(fake) >= it: the validation EER
threshold, or 0.5 when the checkpoint has none, then ``eer_threshold`` is null),
``class_names`` (["real", "fake"]; the output is the probability of the second), ``model_name``,
``dataset``, ``normalization`` ([mean, std]), ``input_dtype``, ``input_layout`` ("NCHW") and
``image_size``. ONNX keeps them in ``metadata_props``
(``onnxruntime.InferenceSession(FILE).get_modelmeta().custom_metadata_map``); TorchScript in the
extra file ``metadata.json`` (``torch.jit.load(FILE, _extra_files=files)`` with
``files = {"metadata.json": ""}``).

Exit code: 0 written, 1 when the checkpoint cannot be read or exported (one line), 2 for a usage error.
"""
import io
import json
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from fakedetect.config.recipe import IMAGE_SIZE
from fakedetect.data.folders import CLASS_NAMES
from fakedetect.io.files import CheckpointError, atomic_write, require_keys
from fakedetect.models.registry import has_global_pooling, load_trained_model

FORMATS = ("onnx", "torchscript")
INPUT_DTYPES = ("uint8", "float32")  # of an ONNX file's input
METADATA_FILE = "metadata.json"  # the TorchScript extra file holding the metadata
ONNX_OPSET = 17  # read by onnxruntime >= 1.14 and by most other runtimes
UNIT_RANGE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # (mean, std) with which predict.py's Normalizer gives 0..1 floats
EXPORT_FIX = "export it with python export.py CHECKPOINT --format onnx|torchscript -o FILE"


class FakeProbability(nn.Module):
    """Images (N x 3 x H x W, uint8 0..255 or float 0..1) -> P(fake) (N): ``model``, whose 2
    logits are (real, fake), behind its input normalization ``(mean, std)``."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images):
        if images.dtype == torch.uint8:  # scripted, the branch stays; traced (ONNX), the example's type is kept
            images = images.float() / 255
        logits = self.model((images.float() - self.mean) / self.std)
        return torch.sigmoid(logits[:, 1] - logits[:, 0])  # softmax(logits)[:, 1], as predict.py computes it


def export_metadata(checkpoint, input_dtype):
    """The metadata of an exported checkpoint, names to JSON values (see the module's doc)."""
    threshold = checkpoint.get("threshold")
    mean, std = checkpoint["normalization"]
    return {"threshold": 0.5 if threshold is None else float(threshold),
            "eer_threshold": None if threshold is None else float(threshold),
            "class_names": list(CLASS_NAMES), "output": "P(fake), the probability of class_names[1]",
            "model_name": checkpoint["model_name"], "dataset": checkpoint.get("dataset"),
            "normalization": [list(map(float, mean)), list(map(float, std))],
            "input_dtype": input_dtype, "input_layout": "NCHW", "image_size": IMAGE_SIZE}


def without_deprecation_notices(call):
    """``call()`` without torch's notices that the legacy ONNX exporter and ``torch.jit`` are
    deprecated (addressed to developers, not to the user of this command; both work in torch 2.x).
    Other warnings, such as a tracer's that a trace may not fit other inputs, still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(is deprecated|legacy TorchScript-based ONNX export|will be removed)")
        return call()


def export_onnx(detector, path, example, dynamic_size, metadata):
    """Write ``detector`` traced on ``example`` to ``path`` as ONNX (batch size free; height and
    width too when ``dynamic_size``), with ``metadata`` in its metadata_props (values JSON-encoded)."""
    try:
        import onnx
    except ImportError:
        raise SystemExit("error: --format onnx needs the onnx package; pip install 'onnx>=1.16' "
                         "(or export --format torchscript)") from None
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    buffer = io.BytesIO()
    without_deprecation_notices(lambda: torch.onnx.export(  # the legacy exporter: needs only onnx, not onnxscript
        detector, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET, input_names=["images"],
        output_names=["fake_probability"], dynamic_axes={"images": axes, "fake_probability": {0: "batch"}}))
    model = onnx.load_model_from_string(buffer.getvalue())
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.checker.check_model(model)
    atomic_write(path, lambda tmp: onnx.save(model, tmp))


def export_torchscript(model, normalization, path, example, metadata):
    """Write ``model`` behind its ``normalization`` (a FakeProbability) to ``path`` as TorchScript,
    ``metadata`` as the extra file METADATA_FILE. The network is traced on ``example`` (timm's
    models are not all scriptable) and the wrapper scripted, so that it takes uint8 and float
    images alike."""
    mean, std = (torch.tensor(values).view(1, -1, 1, 1) for values in normalization)
    network = without_deprecation_notices(lambda: torch.jit.trace(model, (example.float() / 255 - mean) / std))
    scripted = without_deprecation_notices(lambda: torch.jit.script(FakeProbability(network, *normalization).eval()))
    extra = {METADATA_FILE: json.dumps(metadata)}
    save = lambda tmp: torch.jit.save(scripted, tmp, _extra_files=extra)  # noqa: E731
    atomic_write(path, lambda tmp: without_deprecation_notices(lambda: save(tmp)))


def export_checkpoint(checkpoint_path, output, export_format, input_dtype="uint8"):
    """Export the checkpoint at ``checkpoint_path`` to ``output`` in ``export_format`` (FORMATS);
    ``input_dtype`` (INPUT_DTYPES) is the ONNX input's type. Returns the metadata written.
    Raises CheckpointError naming the file when it is not a detector checkpoint."""
    model, checkpoint = load_trained_model(checkpoint_path)
    require_keys(checkpoint, checkpoint_path, ("model", "model_name", "normalization"))
    example = torch.randint(0, 256, (2, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)  # batch 2: no size-1 shortcut
    metadata = export_metadata(checkpoint, input_dtype if export_format == "onnx" else "uint8 or float32")
    with torch.no_grad():
        if export_format == "onnx":
            detector = FakeProbability(model, *checkpoint["normalization"]).eval()
            example = example if input_dtype == "uint8" else example.float() / 255
            export_onnx(detector, output, example, has_global_pooling(checkpoint["model_name"]), metadata)
        else:
            export_torchscript(model, checkpoint["normalization"], output, example, metadata)
    return metadata


def is_exported_model(path):
    """Whether ``path`` names a file of export.py: ``.onnx``, or a TorchScript archive (a zip with constants.pkl)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


class ExportedAsLogits:
    """An exported model called as predict.py calls a checkpoint's network: it takes the images
    normalized with UNIT_RANGE (floats in 0..1) and returns 2 logits per image, (0, log-odds of
    P(fake)), so that their difference is the fake log-odds predict.py averages."""

    def __init__(self, fake_probability, input_dtype):
        self.fake_probability, self.input_dtype = fake_probability, input_dtype

    def __call__(self, images):
        if self.input_dtype == "uint8":
            images = (images * 255).round().to(torch.uint8)
        log_odds = torch.logit(self.fake_probability(images).double(), eps=1e-12)  # finite where P is 0 or 1
        return torch.stack([torch.zeros_like(log_odds), log_odds], 1)


def load_exported_model(path, device="cpu"):
    """``(model, checkpoint)`` of a file export.py wrote, as ``models.load_trained_model`` returns
    them for a checkpoint: ``model`` an ExportedAsLogits run by onnxruntime (ONNX) or torch
    (TorchScript), ``checkpoint`` a dict of the metadata with ``normalization`` UNIT_RANGE and
    ``threshold`` the EER threshold (None when it had none). Raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: exported model not found; {EXPORT_FIX}")
    if path.suffix.lower() == ".onnx":
        run, metadata = _load_onnx(path, device)
    else:
        run, metadata = _load_torchscript(path, device)
    if "threshold" not in metadata or "input_dtype" not in metadata:
        raise CheckpointError(f"{path}: no metadata of export.py (threshold, input_dtype); {EXPORT_FIX}")
    input_dtype = "uint8" if metadata["input_dtype"] == "uint8" else "float32"
    checkpoint = {**metadata, "threshold": metadata.get("eer_threshold"), "normalization": UNIT_RANGE, "exported": True}
    return ExportedAsLogits(run, input_dtype), checkpoint


def _load_onnx(path, device):
    """(P(fake) of a torch batch, metadata) of the ONNX file ``path``, run by onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        raise CheckpointError(f"{path}: scoring an ONNX model needs onnxruntime; pip install onnxruntime") from None
    providers = ["CUDAExecutionProvider"] if torch.device(device).type == "cuda" else []
    providers = [name for name in providers if name in onnxruntime.get_available_providers()] + ["CPUExecutionProvider"]
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
        metadata = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
    except Exception as error:  # onnxruntime raises its own exception types for files it cannot parse
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: not a loadable ONNX model ({reason}); {EXPORT_FIX}") from None
    name = session.get_inputs()[0].name

    def run(images):
        return torch.from_numpy(session.run(None, {name: images.cpu().numpy()})[0]).to(images.device)
    return run, metadata


def _load_torchscript(path, device):
    """(P(fake) of a torch batch, metadata) of the TorchScript file ``path``."""
    extra = {METADATA_FILE: ""}
    try:
        module = without_deprecation_notices(lambda: torch.jit.load(str(path), map_location=device, _extra_files=extra))
        metadata = json.loads(extra[METADATA_FILE] or "{}")
    except Exception as error:  # torch.jit.load raises RuntimeError and others for files it cannot read
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a loadable TorchScript model ({reason}); {EXPORT_FIX}") from None
    return module, metadata
