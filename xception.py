"""The course's Xception module, kept as a name: fakedetect.models.xception."""
from fakedetect.models.xception import XCEPTION_MEAN, XCEPTION_STD, build_xception_backbone, get_xception_based_model

__all__ = ["build_xception_backbone", "get_xception_based_model", "XCEPTION_MEAN", "XCEPTION_STD"]
