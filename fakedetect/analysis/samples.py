"""What the data look like: real/fake pairs drawn from each dataset, one row per dataset;
plot_samples_of_faces_datasets.py is the command."""
import matplotlib.pyplot as plt
import numpy as np

from fakedetect.analysis.common import save
from fakedetect.data.images import DatasetError, load_image


def readable_sample(files, count, rng):
    """Up to ``count`` of ``files`` drawn without replacement, in file order; files that cannot be
    read are skipped with a warning, as training skips them."""
    chosen = []
    for index in rng.permutation(len(files)):
        if len(chosen) == count:
            break
        try:
            load_image(files[index])
        except DatasetError as error:
            print(f"warning: skipped {error}")
            continue
        chosen.append(index)
    return [files[index] for index in sorted(chosen)]


def sample_pairs(dataset, pairs, seed=0):
    """``pairs`` (real file, fake file) tuples of a FacesDataset's readable images, drawn without
    replacement with ``seed``."""
    rng = np.random.default_rng(seed)
    real = readable_sample(dataset.real_image_files, pairs, rng)
    fake = readable_sample(dataset.fake_image_files, pairs, rng)
    return list(zip(real, fake))


def plot_samples(datasets, pairs, seed, path):
    """One row of real/fake pairs per (name, FacesDataset) in ``datasets``."""
    fig, axes = plt.subplots(len(datasets), 2 * pairs, figsize=(2 * pairs * 2.0, len(datasets) * 2.4), squeeze=False)
    for row, (name, dataset) in zip(axes, datasets):
        for ax in row:
            ax.axis("off")
        for column, files in enumerate(sample_pairs(dataset, pairs, seed)):
            for offset, (label, file) in enumerate(zip(("real", "fake"), files)):
                ax = row[2 * column + offset]
                ax.imshow(load_image(file))
                ax.set_title(f"{name}: {label}", fontsize=10, color=("tab:blue", "tab:red")[offset])
    fig.suptitle("Real / fake pairs (label = folder of the image)")
    fig.tight_layout()
    return save(fig, path)
