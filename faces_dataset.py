"""The course's dataset module, kept as a name: FacesDataset and the data paths, from fakedetect.data."""
from fakedetect.data.batches import CachedBatches, ItemBatches, balanced_sample_weights, item_transform, make_batches
from fakedetect.data.cache import DecodedFaces, decode_dataset, drop_unreadable
from fakedetect.data.folders import CLASS_NAMES, SPLITS, FacesDataset, dataset_name, find_dataset, load_landmarks
from fakedetect.data.images import IMAGE_EXTENSIONS, DatasetError, list_image_files, load_image
from fakedetect.data.normalization import Normalizer, channel_statistics

__all__ = ["balanced_sample_weights", "CachedBatches", "channel_statistics", "CLASS_NAMES", "dataset_name",
           "DatasetError", "decode_dataset", "DecodedFaces", "drop_unreadable", "FacesDataset", "find_dataset",
           "IMAGE_EXTENSIONS", "item_transform", "ItemBatches", "list_image_files", "load_image", "load_landmarks",
           "make_batches", "Normalizer", "SPLITS"]
