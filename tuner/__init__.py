"""tuner: hyperparameter search for weakly-supervised metric embeddings."""

from tuner.config import TrialConfig
from tuner.errors import TunerError

__all__ = ["TrialConfig", "TunerError"]
__version__ = "0.1.0"
