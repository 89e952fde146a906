"""``quality_classifier``: a fastText classifier of positives against negatives (``classifier``), the
selection by score (``selection``) and the selector (``selector``)."""
from .selector import QualityClassifier

__all__ = ["QualityClassifier"]
