"""Explanation maps scored against ground-truth manipulation masks, and their per-class means
(analysis.common.plot_mean_maps draws them).

The demo datasets store the mask of every fake in ``{split}/masks/`` (255 = manipulated).
For each fake with a mask two scores are computed from a non-negative map:

* energy inside: the share of the map's total inside the mask (1 = all evidence on the
  manipulated region);
* pointing game: whether the map's maximum falls inside the mask (hit rate over images).

Baselines give the floor to beat: a uniform map (energy share and expected hit rate both
equal to the mask's area fraction) and a centred Gaussian (manipulations often sit in the face
centre, so a map that merely favours the centre already scores above uniform). A constant map
(all zero included) has no maximum: its pointing-game score is the expected hit rate of a
random pixel, the mask's area fraction.

``self_blended_fakes`` gives the other kind of ground truth: pseudo-fakes made from the real
images of a split (data/self_blend.py), whose blend masks are known exactly, so any split with
landmarks can be scored, fakes or no fakes.
"""
import numpy as np
import torch

from fakedetect.config.recipe import IMAGE_SIZE
from fakedetect.data.batches import normalized_batches
from fakedetect.data.cache import DecodedFaces
from fakedetect.data.folders import landmarks_tensor, mask_path, read_mask
from fakedetect.data.images import load_image
from fakedetect.data.self_blend import self_blend
from fakedetect.metrics import format_metric

BASELINES = ("centre baseline", "uniform baseline")


def load_mask(path, shape):
    """A mask file as a boolean array of ``shape``: manipulated where its 8-bit value is above 127."""
    return read_mask(path, shape) > 127


def fake_mask(dataset, index, shape):
    """The ground-truth mask of fake ``dataset.files[index]`` (its file in ``masks/``) as booleans of
    ``shape``, or None (real image / no mask)."""
    if dataset.labels[index] != 1:
        return None
    path = mask_path(dataset, index)
    return load_mask(path, shape) if path.is_file() else None


def self_blended_fakes(split, seed=0):
    """The real images of ``split`` that its landmarks.json lists, each made a pseudo-fake of itself
    (data/self_blend.py: landmark hull masks, parameters drawn from ``seed``, blended on the CPU so every
    machine makes the same ones). Returns (DecodedFaces of the pseudo-fakes, labelled fake; their
    masks, N x H x W booleans: manipulated where the blend weight is at least half its peak, as the
    demo masks mark where the pasted face's weight passes one half)."""
    landmarks = landmarks_tensor(split)
    # only these images are read: an image without landmarks would come back unchanged (mask="hull")
    rows = [row for row, label in enumerate(split.labels) if label == 0 and not landmarks[row].isnan().any()]
    images = torch.zeros((len(rows), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    for image, row in zip(images, rows):
        image.copy_(torch.from_numpy(np.array(load_image(split.files[row]))).permute(2, 0, 1))
    fakes, weights, made = self_blend(images, landmarks[rows], torch.Generator().manual_seed(seed), mask="hull")
    masks = (weights >= weights.amax((1, 2, 3), keepdim=True) / 2)[:, 0]
    files = [split.files[row] for row, kept in zip(rows, made.tolist()) if kept]  # landmarks off the image: no mask
    fakes = DecodedFaces(fakes[made], torch.ones(len(files), dtype=torch.int64), files, split.root_path)
    return fakes, masks[made].numpy()


def centre_map(shape):
    """A Gaussian centred on the image, sigma a quarter of its size."""
    rows, columns = np.mgrid[:shape[0], :shape[1]]
    sigma_rows, sigma_columns = shape[0] / 4, shape[1] / 4
    return np.exp(-0.5 * (((rows - (shape[0] - 1) / 2) / sigma_rows) ** 2
                          + ((columns - (shape[1] - 1) / 2) / sigma_columns) ** 2))


def score_map(saliency, mask):
    """(share of the map's energy inside ``mask``, pointing-game hit 0/1) of one non-negative map;
    a constant map scores the mask's area fraction for both."""
    total, area = float(saliency.sum()), float(mask.mean())
    energy = float(saliency[mask].sum() / total) if total > 0 else area
    hit = float(mask.flat[int(np.argmax(saliency))]) if saliency.max() > saliency.min() else area
    return energy, hit


def explain_dataset(dataset, explain, normalization, device, batch_size=32, desc=None, masks=None):
    """Run ``explain(images, labels) -> B x H x W`` maps over ``dataset``; returns the mean
    max-normalized map per class and the scores of every fake that has a mask: its file in
    ``masks/``, or with ``masks`` (N x H x W booleans, as ``self_blended_fakes`` gives) every image's.

    Returns {"mean_maps": {0: map or None, 1: map or None}, "counts": {0: n, 1: n},
    "scores": {name: [(energy, hit), ...]}} with the map's scores and both baselines' under
    "map", "centre baseline" and "uniform baseline".
    """
    sums, counts = {0: None, 1: None}, {0: 0, 1: 0}
    scores = {name: [] for name in ("map",) + BASELINES}
    position = 0
    for images, labels in normalized_batches(dataset, normalization, device, batch_size, desc=desc):
        maps = np.asarray(explain(images, labels), dtype=np.float64)
        for saliency, label in zip(maps, labels.tolist()):
            peak = saliency.max()
            normalized = saliency / peak if peak > 0 else np.zeros_like(saliency)
            sums[label] = normalized if sums[label] is None else sums[label] + normalized
            counts[label] += 1
            mask = fake_mask(dataset, position, saliency.shape) if masks is None else masks[position]
            if mask is not None:
                scores["map"].append(score_map(saliency, mask))
                scores["centre baseline"].append(score_map(centre_map(saliency.shape), mask))
                scores["uniform baseline"].append(score_map(np.ones_like(saliency), mask))
            position += 1
    mean_maps = {label: None if sums[label] is None else sums[label] / counts[label] for label in (0, 1)}
    return {"mean_maps": mean_maps, "counts": counts, "scores": scores}


def summarize_scores(scores, name="map"):
    """{row: {"images", "energy_inside_mask", "pointing_game"}} means of explain_dataset's scores,
    the map's row called ``name``."""
    return {name if row == "map" else row: {"images": len(rows),
                   "energy_inside_mask": float(np.mean([r[0] for r in rows])) if rows else None,
                   "pointing_game": float(np.mean([r[1] for r in rows])) if rows else None}
            for row, rows in scores.items()}


def format_scores_table(table):
    """{name: summary} as an aligned text table (one row per explanation / baseline)."""
    width = max(len(name) for name in table) + 2
    lines = [f"  {'explanation':<{width}}{'fakes':>6}  {'energy in mask':>14}  {'pointing game':>13}"]
    for name, row in table.items():
        lines.append(f"  {name:<{width}}{row['images']:>6}  {format_metric(row['energy_inside_mask']):>14}  "
                     f"{format_metric(row['pointing_game']):>13}")
    return "\n".join(lines)
