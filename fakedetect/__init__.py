"""fakedetect: train, evaluate and explain detectors that tell real face images from manipulated ones.

One sub-package per concern, each importing only those before it: ``metrics`` (a leaf), ``io`` (files and
runs), ``config`` (recipes, config files, resume rules), ``data`` (images, datasets, the decode cache,
batches, augmentations), ``faces`` (face detection, video frames, dataset building), ``models`` (the
detectors), ``train`` (the training loop), ``explain`` (saliency and Grad-CAM maps), ``analysis`` (figures
and tables), ``serve`` (prediction, export, the web demo) and ``cli`` (every command's flags; argparse
lives there only). Importing the package imports none of them.
"""
