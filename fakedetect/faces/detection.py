"""Find the largest face in a photo or video frame and cut the training crop around it.

Two detectors. ``dlib`` (the default when installed): dlib's HOG frontal-face detector and
its 68-point shape predictor (``pip install dlib-bin face-recognition-models``; the model
file ships inside the face-recognition-models wheel; it was trained on iBUG 300-W, whose
images are for non-commercial research only). ``haar``: OpenCV's frontal-face Haar cascade,
which ships inside the ``opencv-python-headless`` (< 5) wheel; it finds fewer faces and no
landmarks. Nothing is downloaded at run time.

The crop is the detected box made square, enlarged 1.3x about its centre (the usual choice
of face-forensics benchmarks) and resized to 256x256; parts of the square outside the image
are filled with black. With ``align`` (dlib only) the image is first rotated about the
centre of the eyes so that the line between the eye centres is level. ``predict.py
--crop-faces`` and ``build_faces_dataset.py`` share it, so a detector sees the same kind of
crop at prediction time as in training.
"""
import importlib.util
import math
from collections import namedtuple
from pathlib import Path

import numpy as np
from PIL import Image

from fakedetect.config.recipe import IMAGE_SIZE
from fakedetect.data.images import load_image

DETECTORS = ("dlib", "haar")
CASCADE_FILE = "haarcascade_frontalface_default.xml"
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
ENLARGE = 1.3
DETECT_MAX_SIDE = 1024
DLIB_WINDOW = 80  # dlib's HOG detector finds faces down to about 80 pixels; each upsampling halves that
MAX_UPSAMPLE = 2
HAAR_TO_DLIB = (0.12, 0.86)  # dlib's box centre 0.12 widths below the Haar box's, its side 0.86 of it (sd 0.04, 0.08)
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # the 68-point (iBUG 300-W) eye contours, image left and right
INSTALL_HINT = "pip install 'opencv-python-headless>=4.8,<5' (the 5.x wheels no longer ship the Haar cascades)"
DLIB_HINT = "pip install dlib-bin face-recognition-models"

Face = namedtuple("Face", "crop box landmarks angle")
Face.__doc__ = """A face crop (256x256 PIL image), its detector box ``(x, y, w, h)`` in source pixels, its
68 landmarks as a 68x2 float array in crop pixels (None for the Haar detector) and the rotation
in degrees applied before cropping (0 unless aligned)."""


class FaceDetectorError(RuntimeError):
    """A detector or its model file is not available; the message says what to install."""


def read_photo(path):
    """A photo at full resolution as an RGB uint8 array, read as training reads images
    (``data.images.load_image``: EXIF orientation, any mode, decompression bombs refused).

    Raises DatasetError naming the file when it cannot be decoded.
    """
    return np.asarray(load_image(path, size=None))


def landmark_model_path():
    """The 68-point model inside the face-recognition-models package (found without importing
    it: its ``__init__`` needs pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    path = (Path(spec.submodule_search_locations[0]) / "models" / LANDMARK_MODEL
            if spec is not None and spec.submodule_search_locations else None)
    if path is None or not path.is_file():
        raise FaceDetectorError(f"the dlib landmark model {LANDMARK_MODEL} is not installed; {DLIB_HINT}")
    return path


def default_detector():
    """``("dlib", None)`` when dlib and its landmark model are installed, else ``("haar", note)``
    with a one-line note saying why and how to get dlib."""
    try:
        import dlib  # noqa: F401
        landmark_model_path()
    except ImportError:
        return "haar", f"note: dlib is not installed, using the Haar detector (fewer faces, no landmarks); {DLIB_HINT}"
    except FaceDetectorError as error:
        return "haar", f"note: {error}; using the Haar detector (fewer faces, no landmarks)"
    return "dlib", None


def detection_scale(rgb):
    """The factor images larger than DETECT_MAX_SIDE are shrunk by for detection (faster; boxes are scaled back)."""
    return min(1.0, DETECT_MAX_SIDE / max(rgb.shape[:2]))


class HaarDetector:
    """OpenCV's Haar cascade: ``faces(rgb, min_face)`` -> list of ``(box, None)``."""

    def __init__(self):
        try:
            import cv2
        except ImportError:
            raise FaceDetectorError(f"OpenCV is not installed; {INSTALL_HINT}") from None
        cascade = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / CASCADE_FILE
        if not cascade.is_file():
            raise FaceDetectorError(f"OpenCV {cv2.__version__} has no bundled {CASCADE_FILE}; {INSTALL_HINT}")
        self.cv2 = cv2
        self.cascade = cv2.CascadeClassifier(str(cascade))

    def faces(self, rgb, min_face):
        height, width = rgb.shape[:2]
        scale = detection_scale(rgb)
        gray = self.cv2.cvtColor(rgb, self.cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = self.cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=self.cv2.INTER_AREA)
        min_side = max(8, round(min_face * scale))
        boxes = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        return [(tuple(int(round(value / scale)) for value in box), None) for box in boxes]


class DlibDetector:
    """dlib's HOG detector and 68-point shape predictor: ``faces(rgb, min_face)`` -> list of ``(box, 68x2 landmarks)``.

    The image is searched as is first, and upsampled (up to ``max_upsample`` times, each
    doubling its size) only while nothing is found and faces of ``min_face`` pixels could
    still be smaller than the detector's window: large faces cost one pass. With
    ``haar_fallback``, an image where HOG finds nothing is searched with the Haar cascade,
    and the landmarks are predicted in the Haar box moved to where dlib's box would be
    (HAAR_TO_DLIB).
    """

    def __init__(self, max_upsample=MAX_UPSAMPLE, haar_fallback=True):
        try:
            import dlib
        except ImportError:
            raise FaceDetectorError(f"dlib is not installed; {DLIB_HINT}") from None
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(landmark_model_path()))
        self.max_upsample = max_upsample
        self.haar = HaarDetector() if haar_fallback else None

    def faces(self, rgb, min_face):
        height, width = rgb.shape[:2]
        scale = detection_scale(rgb)
        small = np.ascontiguousarray(rgb if scale == 1.0 else np.asarray(
            Image.fromarray(rgb).resize((round(width * scale), round(height * scale)), Image.BOX)))
        scale = small.shape[1] / width
        for upsample in range(self.max_upsample + 1):
            rectangles = self.detector(small, upsample)
            if rectangles or DLIB_WINDOW / 2 ** upsample <= min_face * scale:
                break
        boxes = [(rectangle.left() / scale, rectangle.top() / scale, rectangle.width() / scale,
                  rectangle.height() / scale) for rectangle in rectangles]
        if not boxes and self.haar is not None:
            boxes = [haar_to_dlib(box) for box, _ in self.haar.faces(rgb, min_face)]
        rgb = np.ascontiguousarray(rgb)
        found = []
        for box in boxes:
            if min(box[2:]) < min_face:
                continue
            box = tuple(int(round(value)) for value in box)
            shape = self.predictor(rgb, self.dlib.rectangle(box[0], box[1], box[0] + box[2], box[1] + box[3]))
            found.append((box, np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float64)))
        return found


def haar_to_dlib(box):
    """A Haar box moved to where dlib's HOG box of the same face lies: HAAR_TO_DLIB (centre lower by a share
    of the width, side a share of it), measured on 37 faces both found (drawn faces, the astronaut, FF++ frames)."""
    x, y, w, h = box
    down, side = HAAR_TO_DLIB
    cx, cy = x + w / 2, y + h / 2 + down * w
    return cx - side * w / 2, cy - side * h / 2, side * w, side * h


def eye_line(landmarks):
    """The centres of the two eyes (image left, image right) of 68 landmarks, and the angle of the line
    between them in degrees (positive when the right one is lower, image y pointing down)."""
    left, right = landmarks[LEFT_EYE].mean(axis=0), landmarks[RIGHT_EYE].mean(axis=0)
    return left, right, math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))


def rotate_points(points, center, degrees):
    """``points`` (N x 2) rotated by ``degrees`` about ``center`` the way ``PIL.Image.rotate(degrees, center=center)``
    moves the pixels under them (counter-clockwise on screen for positive angles)."""
    radians = math.radians(degrees)
    cos, sin = math.cos(radians), math.sin(radians)
    offset = np.asarray(points, dtype=np.float64) - center
    return center + offset @ np.array([[cos, -sin], [sin, cos]])


class FaceCropper:
    """Largest-face detector and cropper: ``cropper(rgb)`` -> ``(256x256 PIL image, (x, y, w, h))`` or None;
    ``cropper.face(rgb)`` -> a ``Face`` (crop, box, landmarks, angle) or None.

    ``detector``: "dlib", "haar" or None (dlib when installed, else haar; ``note`` then says why).
    ``whole``: the images are face crops already (DFDC's, say): the crop is the whole image (made square
    about its centre, black outside), and the face found only places the landmarks.
    """

    def __init__(self, min_face=32, enlarge=ENLARGE, size=IMAGE_SIZE, detector=None, align=False, whole=False):
        self.note = None
        if detector is None:
            detector, self.note = default_detector()
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        if align and detector != "dlib":
            raise FaceDetectorError("aligning the eyes needs landmarks, which only the dlib detector gives; "
                                    f"{DLIB_HINT}, or leave out --align")
        self.name = detector
        self.detector = DlibDetector() if detector == "dlib" else HaarDetector()
        if align and whole:
            raise ValueError("a whole-image crop cannot be aligned: its face is cropped already")
        self.min_face, self.enlarge, self.size, self.align, self.whole = min_face, enlarge, size, align, whole

    def __reduce__(self):
        """Pickled as its settings (dlib's models do not pickle): a worker process rebuilds its own detector."""
        return FaceCropper, (self.min_face, self.enlarge, self.size, self.name, self.align, self.whole)

    def faces(self, rgb):
        """Every face found: a list of ``(box, landmarks)``, box ``(x, y, w, h)`` and landmarks in image pixels
        (landmarks None for haar)."""
        return self.detector.faces(rgb, self.min_face)

    def largest_face(self, rgb):
        """``(box, landmarks)`` of the largest face, or None when no face is found."""
        faces = self.faces(rgb)
        return max(faces, key=lambda face: face[0][2] * face[0][3]) if faces else None

    def square(self, box):
        """The crop's square ``(left, top, side)`` in source pixels around ``box``, enlarged ``enlarge`` times."""
        x, y, w, h = box
        side = max(w, h) * self.enlarge
        return round(x + w / 2 - side / 2), round(y + h / 2 - side / 2), round(side)

    def whole_square(self, rgb):
        """The square ``(left, top, side)`` about the image's centre that holds all of it (``whole`` crops)."""
        height, width = rgb.shape[:2]
        side = max(height, width)
        return (width - side) // 2, (height - side) // 2, side

    def crop(self, rgb, box):
        """The square ``enlarge``-times crop around ``box`` (``whole``: the whole image), resized to ``size`` x
        ``size`` (black outside the image)."""
        left, top, side = self.whole_square(rgb) if self.whole else self.square(box)
        square = Image.fromarray(rgb).crop((left, top, left + side, top + side))
        return square.resize((self.size, self.size), Image.BILINEAR)

    def face(self, rgb, found=None):
        """The ``Face`` of ``found`` (a ``(box, landmarks)`` of ``faces``), by default of the largest face;
        None when there is no face."""
        found = found or self.largest_face(rgb)
        if found is None:
            return None
        box, landmarks = found
        angle = 0.0
        if self.align:
            left_eye, right_eye, tilt = eye_line(landmarks)
            center = (left_eye + right_eye) / 2
            # PIL turns counter-clockwise for positive angles, which lifts a lower right eye: rotate by the tilt itself
            rgb = np.asarray(Image.fromarray(rgb).rotate(tilt, resample=Image.BILINEAR, center=tuple(center)))
            landmarks, angle = rotate_points(landmarks, center, tilt), tilt
            box_center = rotate_points([[box[0] + box[2] / 2, box[1] + box[3] / 2]], center, tilt)[0]
            box = (box_center[0] - box[2] / 2, box_center[1] - box[3] / 2, box[2], box[3])
        left, top, side = self.whole_square(rgb) if self.whole else self.square(box)
        in_crop = None if landmarks is None else (landmarks - (left, top)) * (self.size / side)
        return Face(self.crop(rgb, box), found[0], in_crop, angle)

    def __call__(self, rgb):
        face = self.face(rgb)
        return None if face is None else (face.crop, face.box)


TRACK_MIN_OVERLAP = 0.2  # intersection over union with the last box that counts as the same face
TRACK_MAX_SHIFT = 2.0  # else: a centre at most this many box sides from the last centre (sampled frames are far apart)
TRACK_MAX_RESIZE = 1.5  # ... and a side at most this many times larger or smaller than the last box's


def overlap(box, other):
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    width = min(box[0] + box[2], other[0] + other[2]) - max(box[0], other[0])
    height = min(box[1] + box[3], other[1] + other[3]) - max(box[1], other[1])
    common = max(0, width) * max(0, height)
    return common / (box[2] * box[3] + other[2] * other[3] - common)


def centre_shift(box, other):
    """Distance between the centres of two boxes, in sides of ``box``."""
    return math.dist((box[0] + box[2] / 2, box[1] + box[3] / 2),
                     (other[0] + other[2] / 2, other[1] + other[3] / 2)) / max(box[2], box[3])


def continues(box, last_box):
    """How well ``box`` continues a track whose last box is ``last_box``: ``(True, overlap)`` when they overlap
    enough, ``(False, -centre shift)`` when the centre is near enough and the size similar, None when it does
    not continue it (the larger the better)."""
    if overlap(last_box, box) >= TRACK_MIN_OVERLAP:
        return True, overlap(last_box, box)
    shift, resize = centre_shift(last_box, box), max(box[2], box[3]) / max(last_box[2], last_box[3])
    return (False, -shift) if shift <= TRACK_MAX_SHIFT and 1 / TRACK_MAX_RESIZE <= resize <= TRACK_MAX_RESIZE else None


def face_track(frames_faces):
    """The face of a video, frame by frame: for ``frames_faces``, one list of ``(box, landmarks)`` per frame
    (``FaceCropper.faces``), the tracked face of each frame or None.

    Faces are linked from frame to frame into tracks, the largest first: a face continues the track whose
    last box it overlaps most (intersection over union >= TRACK_MIN_OVERLAP) or, when none overlaps that
    much, the one whose last centre is nearest, within TRACK_MAX_SHIFT sides of that box and of a side
    within TRACK_MAX_RESIZE times its side (sampled frames can be a second apart); else it starts a track.
    The video's face is the track seen in the most frames (ties: the larger mean box, then the earlier
    start), so a passer-by, or a false detection, seen in fewer frames than the speaker is never taken
    for them, however big.
    """
    tracks = []  # each: {frame index: face}, in order of creation
    for index, faces in enumerate(frames_faces):
        free = list(tracks)
        for face in sorted(faces, key=lambda face: -face[0][2] * face[0][3]):
            scored = [(continues(face[0], track[max(track)][0]), number) for number, track in enumerate(free)]
            scored = [(score, number) for score, number in scored if score is not None]
            if scored:
                track = free.pop(max(scored)[1])
                track[index] = face
            else:
                tracks.append({index: face})
    if not tracks:
        return [None] * len(frames_faces)
    best = max(tracks, key=lambda track: (len(track), np.mean([face[0][2] * face[0][3] for face in track.values()]),
                                          -min(track)))
    return [best.get(index) for index in range(len(frames_faces))]
