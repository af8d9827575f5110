"""Scoring images and videos with trained detectors (checkpoints or exported models): the inputs expanded
(files, folders, globs, videos), P(fake) of each (one detector, or an ensemble's mean log-odds, with flip
TTA), the decision at a threshold, optional Grad-CAM overlays and the CSV; predict.py is its command."""
import csv
import glob
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fakedetect.data.folders import CLASS_NAMES
from fakedetect.data.images import IMAGE_EXTENSIONS, DatasetError, list_image_files, load_image
from fakedetect.data.normalization import Normalizer
from fakedetect.faces.detection import face_track, read_photo
from fakedetect.faces.video import VIDEO_EXTENSIONS, is_source, video_frames
from fakedetect.io.files import atomic_write
from fakedetect.metrics import mean_in_log_odds
from fakedetect.models.registry import load_trained_model
from fakedetect.serve.export import is_exported_model, load_exported_model

CSV_FIELDS = ("file", "frame", "fake_probability", "decision", "max_frame_probability", "frames",
              "face_x", "face_y", "face_w", "face_h", "cam", "error")
SHEET_COLUMNS = 4  # frames per row of a video's contact sheet


def list_videos(folder):
    """The videos under ``folder`` (recursive, sorted; hidden files and folders skipped)."""
    return sorted(path for path in folder.rglob("*")
                  if path.suffix.lower() in VIDEO_EXTENSIONS and is_source(path, folder))


def is_video(path):
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def folder_images(folder):
    """The images, then the videos, of ``folder``, searched recursively (sorted); of a dataset split (a folder with
    ``real/`` or ``fake/``) only those of ``real/`` then ``fake/``."""
    classes = [folder / name for name in CLASS_NAMES if (folder / name).is_dir()]
    return [file for root in classes or [folder] for file in list_image_files(root) + list_videos(root)]


def expand_inputs(inputs):
    """``(files, failures)``: the image files that ``inputs`` name, in order and each once.

    A file is taken as named; a folder gives its images recursively (sorted), or, when it is a
    dataset split (holds ``real/`` or ``fake/``), those of ``real/`` then ``fake/`` only, as
    training reads it (not its ``masks/``); a glob pattern gives the images it matches (sorted;
    matched folders are searched too).
    ``failures`` lists ``(input, reason)`` for inputs that gave no image.
    """
    files, failures = [], []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = folder_images(path)
        elif glob.has_magic(item):
            found = []
            for match in map(Path, sorted(glob.glob(item, recursive=True))):
                if match.is_dir():
                    found += folder_images(match)
                elif match.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
                    found.append(match)
        else:
            failures.append((item, "not found; check the path"))
            continue
        if not found:
            failures.append((item, f"no images found (looked for {', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)})"))
        files += found
    return list(dict.fromkeys(files)), failures


@torch.inference_mode()
def fake_log_odds(model, images, normalization, device, tta=False):
    """log(P(fake) / P(real)) for a uint8 batch (N x 3 x 256 x 256), i.e. the fake logit minus the
    real one, after normalizing with ``(mean, std)``; with ``tta`` the mean over each image and its
    mirror image."""
    inputs = Normalizer(*normalization, device)(images.to(device))
    logits = model(inputs).float()
    if tta:
        logits = (logits + model(inputs.flip(3)).float()) / 2
    return logits[:, 1] - logits[:, 0]


def mean_fake_log_odds(members, images, device, tta=False):
    """The mean of ``fake_log_odds`` over ``members``, ``(model, normalization)`` pairs (one pair for a single
    checkpoint, several for an ensemble), as a float64 numpy array."""
    odds = torch.stack([fake_log_odds(model, images, normalization, device, tta) for model, normalization in members])
    return odds.mean(0).cpu().numpy().astype(np.float64)


def fake_probabilities(members, images, device, tta=False):
    """P(fake) for a uint8 batch: the sigmoid of ``mean_fake_log_odds``."""
    return 1 / (1 + np.exp(-mean_fake_log_odds(members, images, device, tta)))


def default_threshold(checkpoints):
    """``(threshold, source)`` when no --threshold is given: one checkpoint's validation EER
    threshold; for an ensemble the mean of its members' thresholds in log-odds."""
    thresholds = [checkpoint.get("threshold") for checkpoint in checkpoints]
    if any(threshold is None for threshold in thresholds):
        return 0.5, "0.5: a checkpoint has no validation threshold"
    if len(thresholds) == 1:
        return float(thresholds[0]), "the checkpoint's validation EER threshold"
    return float(mean_in_log_odds(thresholds)), "the mean of the checkpoints' validation EER thresholds in log-odds"


def load_detector(path, device):
    """``(model, checkpoint)`` of a checkpoint, or of a model written by export.py (.onnx, TorchScript),
    whose stand-ins predict() calls alike."""
    return load_exported_model(path, device) if is_exported_model(path) else load_trained_model(path, device)


def read_input(path, cropper=None):
    """``(uint8 3x256x256 array, face box, error)`` for one file; exactly one of array and error is None."""
    try:
        if cropper is None:
            image, box = load_image(path), None
        else:
            found = cropper(read_photo(path))
            if found is None:
                return None, None, "no face found"
            image, box = found
    except DatasetError as error:
        return None, None, str(error).removeprefix(f"{path}: ")
    return np.asarray(image).transpose(2, 0, 1).copy(), box, None


class CamWriter:
    """Saves a Grad-CAM overlay per image: evidence for the fake class, at the layer
    grad_cam_analysis.py explains (SimpleNet ``conv3``, Xception ``act4``, timm models the module
    feeding global pooling); for an ensemble the mean of its members' maps.

    grad-cam (and explain.grad_cam) is imported here, only when ``--cam`` is asked for.
    """

    def __init__(self, members, device, out_dir):
        try:
            import pytorch_grad_cam  # noqa: F401
        except ImportError:
            raise SystemExit("error: --cam needs the grad-cam package; pip install 'grad-cam>=1.5,<2' or drop --cam") from None
        from fakedetect.explain import grad_cam
        self.maps, self.overlay = grad_cam.grad_cam_maps, grad_cam.overlay
        self.device, self.out_dir = device, Path(out_dir)
        self.members = [(model, Normalizer(*normalization, device)) for model, normalization in members]

    def overlays(self, images):
        """The Grad-CAM overlay (H x W x 3 uint8) of every image of the uint8 batch."""
        images_on_device = images.to(self.device)
        maps = np.mean([self.maps(normalize(images_on_device), model, [1] * len(images))
                        for model, normalize in self.members], axis=0)
        return [self.overlay(image.permute(1, 2, 0).numpy(), heat) for image, heat in zip(images, maps)]

    def __call__(self, images, names):
        """Write ``names[i]`` (a PNG path under out_dir) for every image of the uint8 batch; returns the paths."""
        paths = []
        for overlay, name in zip(self.overlays(images), names):
            path = self.out_dir / name
            atomic_write(path, lambda tmp: Image.fromarray(overlay).save(tmp, format="PNG"))
            paths.append(path)
        return paths

    def contact_sheet(self, images, captions, name):
        """Write ``name`` under out_dir: the overlays of the uint8 batch in a grid, SHEET_COLUMNS a row, each
        captioned; returns its path."""
        from PIL import ImageDraw
        overlays = self.overlays(images)
        side = overlays[0].shape[0]
        columns = min(SHEET_COLUMNS, len(overlays))
        sheet = Image.new("RGB", (columns * side, -(-len(overlays) // columns) * side))
        for index, (overlay, caption) in enumerate(zip(overlays, captions)):
            tile = Image.fromarray(overlay)
            draw = ImageDraw.Draw(tile)
            draw.rectangle((0, 0, side, 16), fill=(0, 0, 0))
            draw.text((4, 2), caption, fill=(255, 255, 255))
            sheet.paste(tile, (index % columns * side, index // columns * side))
        path = self.out_dir / name
        atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))
        return path


def predict(members, files, threshold, device="cpu", batch_size=32, cropper=None, cams=None, tta=False,
            progress=True):
    """One result dict per file: file, fake_probability, decision ('fake'/'real'), face_box, cam, error.

    ``members`` are ``(model, normalization)`` pairs, scored as in ``fake_probabilities``. Files
    are read and scored ``batch_size`` at a time; a file that cannot be read (or has no face,
    with a ``cropper``) gets an ``error`` and no probability.
    """
    results = []
    with tqdm(total=len(files), desc="scoring", unit="image", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(files), batch_size):
            batch = []
            for index, path in enumerate(files[start:start + batch_size], start):
                array, box, error = read_input(path, cropper)
                results.append({"file": str(path), "fake_probability": None, "decision": None,
                                "face_box": list(box) if box else None, "cam": None, "error": error})
                if array is not None:
                    batch.append((index, array))
            if batch:
                images = torch.from_numpy(np.stack([array for _, array in batch]))
                scores = fake_probabilities(members, images, device, tta)
                cam_paths = cams(images, [f"{i:04d}_{files[i].stem}.png" for i, _ in batch]) if cams else [None] * len(batch)
                for (index, _), score, cam_path in zip(batch, scores, cam_paths):
                    results[index].update(fake_probability=float(score), cam=str(cam_path) if cam_path else None,
                                          decision="fake" if score >= threshold else "real")
            bar.update(min(batch_size, len(files) - start))
    return results


def video_row(path, **values):
    """A result row of a video (``frame`` None) or of one of its frames, with every key of an image's row."""
    return {"file": str(path), "frame": None, "fake_probability": None, "decision": None, "max_frame_probability": None,
            "frames": None, "face_box": None, "cam": None, "error": None, **values}


def predict_video(members, path, threshold, cropper, frames=16, fps=None, device="cpu", batch_size=32, cams=None,
                  tta=False, sheet_name=None):
    """``(video row, frame rows)`` for one video. ``frames`` evenly spaced frames (or ``fps`` a second) are
    read, the video's face found in them (faces.detection.face_track, as build_faces_dataset.py crops
    videos) and each crop scored: its fake log-odds is ``mean_fake_log_odds``. The video's P(fake) is
    the sigmoid of the mean of its frames' log-odds; ``max_frame_probability`` is its most fake frame's
    P(fake); ``frames`` counts the frames scored. Frames without the tracked face get an error; a video
    with no face in any frame, or unreadable, gets an error and no probability. With ``cams``, a contact
    sheet of the scored frames' Grad-CAM overlays is written as ``sheet_name``."""
    try:
        decoded = video_frames(path, frames, fps)
    except DatasetError as error:
        return video_row(path, error=str(error).removeprefix(f"{path}: ")), []
    frame_rows, crops = [], []
    for (index, rgb), tracked in zip(decoded, face_track([cropper.faces(rgb) for _, rgb in decoded])):
        face = None if tracked is None else cropper.face(rgb, tracked)
        frame_rows.append(video_row(path, frame=index, error="no face found" if face is None else None,
                                    face_box=None if face is None else list(face.box)))
        if face is not None:
            crops.append(np.asarray(face.crop).transpose(2, 0, 1))
    if not crops:
        return video_row(path, frames=0, error=f"no face found in any of {len(decoded)} frames"), frame_rows
    images = torch.from_numpy(np.stack(crops))
    log_odds = np.concatenate([mean_fake_log_odds(members, images[start:start + batch_size], device, tta)
                               for start in range(0, len(images), batch_size)])
    probabilities = 1 / (1 + np.exp(-log_odds))
    for row, probability in zip([row for row in frame_rows if row["error"] is None], probabilities):
        row.update(fake_probability=float(probability), decision="fake" if probability >= threshold else "real")
    probability = float(1 / (1 + np.exp(-log_odds.mean())))
    sheet = None
    if cams:
        captions = [f"frame {row['frame']}  p(fake) {row['fake_probability']:.2f}" for row in frame_rows
                    if row["error"] is None]
        sheet = str(cams.contact_sheet(images, captions, sheet_name or f"{Path(path).stem}_sheet.png"))
    return video_row(path, fake_probability=probability, decision="fake" if probability >= threshold else "real",
                     max_frame_probability=float(probabilities.max()), frames=len(crops), cam=sheet), frame_rows


def predict_videos(members, files, threshold, cropper, frames=16, fps=None, device="cpu", batch_size=32, cams=None,
                   tta=False, per_frame=False, progress=True):
    """``predict_video`` of every file: its video row, followed with ``per_frame`` by its frame rows."""
    results = []
    for index, path in enumerate(tqdm(files, desc="scoring videos", unit="video", disable=not progress,
                                      file=sys.stderr)):
        video, frame_rows = predict_video(members, path, threshold, cropper, frames, fps, device, batch_size, cams,
                                          tta, sheet_name=f"{index:04d}_{Path(path).stem}_sheet.png")
        results += [video] + (frame_rows if per_frame else [])
    return results


def format_table(results):
    """The terminal table: fake probability, decision, file (and the reason for a failure)."""
    lines = [f"{'p(fake)':>8}  {'decision':<8}  file"]
    for row in results:
        where = row["file"] + (f"  frame {row['frame']}" if row.get("frame") is not None else "")
        if row.get("frames"):
            where += f"  ({row['frames']} frames, most fake {row['max_frame_probability']:.4f})"
        if row["error"] is None:
            lines.append(f"{row['fake_probability']:8.4f}  {row['decision'].upper():<8}  {where}")
        else:
            lines.append(f"{'-':>8}  {'FAILED':<8}  {where}  ({row['error']})")
    return "\n".join(lines)


def write_csv(path, results):
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for row in results:
                box = row["face_box"] or [None] * 4
                writer.writerow({**{key: row.get(key) for key in CSV_FIELDS if key in row},
                                 **dict(zip(("face_x", "face_y", "face_w", "face_h"), box))})
    atomic_write(path, write)
