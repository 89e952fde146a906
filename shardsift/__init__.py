"""shardsift: curate pretraining corpora from Parquet shards with a staged pipeline of selectors."""
from .selectors.base import DecideContext, Decision, Docs, FitContext, Param, Scores, Selector

__version__ = "0.1.0"

__all__ = [
    "DecideContext",
    "Decision",
    "Docs",
    "FitContext",
    "Param",
    "Scores",
    "Selector",
    "__version__",
]
