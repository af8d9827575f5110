"""From image files to normalized batches: reading images, the dataset folders, the decode cache, both batch
paths, normalization, augmentations, self-blended pseudo-fakes and the generated demo data."""
