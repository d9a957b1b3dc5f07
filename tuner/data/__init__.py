"""Datasets, feature extractors, normalization, composite labels and the on-disk feature cache.

`load_features(cfg)` is the entry point; the lower-level pieces are exported for benchmarks.
Nothing here imports torch until a function needs it.
"""

from tuner.data.cache import default_cache_dir
from tuner.data.features import FeatureSet
from tuner.data.hog import hog_features
from tuner.data.pipeline import load_features
from tuner.data.resnet import resnet_features

__all__ = ["FeatureSet", "default_cache_dir", "hog_features", "load_features", "resnet_features"]
