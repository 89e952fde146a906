"""DSIR, Data Selection with Importance Resampling: hashed n-gram features (``features``), the
bag-of-n-grams estimator and importance weights (``estimator``), the selector (``selector``)."""
from .estimator import ESTIMATOR_FILE, kl, log_probs
from .features import featurize
from .selector import DSIRSelector

__all__ = ["ESTIMATOR_FILE", "DSIRSelector", "featurize", "kl", "log_probs"]
