"""shardsift: curate pretraining corpora from Parquet shards with a staged pipeline of selectors."""
from .selectors.base import Decision, DecideContext, Docs, FitContext, Param, Scores, Selector

__version__ = "0.1.0"

__all__ = [
    "Decision", "DecideContext", "Docs", "FitContext", "Param", "Scores", "Selector", "__version__",
]
