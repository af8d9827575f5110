"""Photos and videos as face sources: which files are sources, and the frames of a video (evenly spaced, or so
many a second), read with OpenCV; the dataset build and predict.py share them."""
from pathlib import Path

import numpy as np

from fakedetect.data.images import IMAGE_EXTENSIONS, DatasetError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_source(path, folder):
    """Whether ``path`` under ``folder`` is a photo or video (hidden files and folders are not)."""
    return (path.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def list_sources(folder):
    """Photos and videos under ``folder`` (recursive, sorted; hidden files and folders skipped)."""
    folder = Path(folder)
    return sorted(path for path in folder.rglob("*") if is_source(path, folder))


def frame_indices(total, count):
    """``count`` evenly spaced frame indices of a ``total``-frame video, first and last included."""
    return sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))


def frame_indices_at_fps(total, video_fps, fps):
    """The indices of a ``total``-frame video at ``video_fps`` taken ``fps`` times a second, from the first frame
    (every frame when ``fps`` is at least the video's)."""
    return sorted(set(np.arange(0, total, max(1.0, video_fps / fps)).round().astype(int).clip(0, total - 1).tolist()))


def video_frames(path, count, fps=None):
    """``(frame index, RGB uint8 frame)`` for ``count`` evenly spaced frames of a video, or, with ``fps``,
    ``fps`` frames per second of it.

    Frames are decoded in order (reliable for every codec, unlike seeking). Raises
    DatasetError naming the file when OpenCV cannot open or decode it.
    """
    import cv2
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    if capture.isOpened() and total <= 0:
        while capture.grab():
            total += 1
        capture.release()
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened() or total <= 0:
        capture.release()
        raise DatasetError(f"{path}: cannot read video (OpenCV found no frames); re-encode it (e.g. to H.264 .mp4) or remove it")
    if fps is None:
        wanted = frame_indices(total, count)
    else:
        video_fps = capture.get(cv2.CAP_PROP_FPS)
        if not video_fps > 0:
            capture.release()
            raise DatasetError(f"{path}: the video does not say its frame rate; "
                               "sample it with --frames instead of --fps")
        wanted = frame_indices_at_fps(total, video_fps, fps)
    frames, index = [], 0
    while index <= wanted[-1] and capture.grab():
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok:
                frames.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        index += 1
    capture.release()
    if not frames:
        raise DatasetError(f"{path}: cannot decode any frame; re-encode it (e.g. to H.264 .mp4) or remove it")
    return frames
