"""Find the largest face in a photo or video frame and cut the training crop around it.

The detector is OpenCV's frontal-face Haar cascade, which ships inside the
``opencv-python-headless`` (< 5) wheel: nothing is downloaded at run time. The crop is the
detected box made square, enlarged 1.3x about its centre (the usual choice of
face-forensics benchmarks) and resized to 256x256; parts of the square outside the image
are filled with black. ``predict.py --crop-faces`` and ``build_faces_dataset.py`` share it,
so a detector sees the same kind of crop at prediction time as in training.
"""
from pathlib import Path

import numpy as np
from PIL import Image

from faces_dataset import IMAGE_SIZE, load_image

CASCADE_FILE = "haarcascade_frontalface_default.xml"
ENLARGE = 1.3
DETECT_MAX_SIDE = 1024
INSTALL_HINT = "pip install 'opencv-python-headless>=4.8,<5' (the 5.x wheels no longer ship the Haar cascades)"


class FaceDetectorError(RuntimeError):
    """OpenCV or its face cascade is not available; the message says what to install."""


def read_photo(path):
    """A photo at full resolution as an RGB uint8 array, read as training reads images
    (``faces_dataset.load_image``: EXIF orientation, any mode, decompression bombs refused).

    Raises DatasetError naming the file when it cannot be decoded.
    """
    return np.asarray(load_image(path, size=None))


class FaceCropper:
    """Largest-face detector and cropper: ``cropper(rgb)`` -> ``(256x256 PIL image, (x, y, w, h))`` or None."""

    def __init__(self, min_face=32, enlarge=ENLARGE, size=IMAGE_SIZE):
        try:
            import cv2
        except ImportError:
            raise FaceDetectorError(f"OpenCV is not installed; {INSTALL_HINT}") from None
        cascade = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / CASCADE_FILE
        if not cascade.is_file():
            raise FaceDetectorError(f"OpenCV {cv2.__version__} has no bundled {CASCADE_FILE}; {INSTALL_HINT}")
        self.cv2 = cv2
        self.detector = cv2.CascadeClassifier(str(cascade))
        self.min_face, self.enlarge, self.size = min_face, enlarge, size

    def largest_face(self, rgb):
        """The largest face box ``(x, y, w, h)`` in image pixels, or None when no face is found.

        Images larger than DETECT_MAX_SIDE are searched at that size (faster) and the box
        is scaled back.
        """
        height, width = rgb.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
        gray = self.cv2.cvtColor(rgb, self.cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = self.cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=self.cv2.INTER_AREA)
        min_side = max(8, round(self.min_face * scale))
        faces = self.detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda box: box[2] * box[3])
        return tuple(int(round(value / scale)) for value in (x, y, w, h))

    def crop(self, rgb, box):
        """The square ``enlarge``-times crop around ``box``, resized to ``size`` x ``size`` (black outside the image)."""
        x, y, w, h = box
        side = max(w, h) * self.enlarge
        cx, cy = x + w / 2, y + h / 2
        left, top = round(cx - side / 2), round(cy - side / 2)
        square = Image.fromarray(rgb).crop((left, top, left + round(side), top + round(side)))
        return square.resize((self.size, self.size), Image.BILINEAR)

    def __call__(self, rgb):
        box = self.largest_face(rgb)
        return None if box is None else (self.crop(rgb, box), box)
