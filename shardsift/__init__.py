"""shardsift: curate pretraining corpora with a staged, columnar pipeline of selectors.

Importing the package loads only the plugin contract and the Python API; selectors, the engine's
executors and every heavy dependency load when a run needs them.
"""
from .api import Capabilities, DecideContext, Decision, Docs, Filter, FitContext, Scores, Selector
from .params import Param

__version__ = "0.1.0"


def __getattr__(name):  # the Python API loads the engine only when it is asked for
    if name in ("Pipeline", "Result"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'shardsift' has no attribute {name!r}")


__all__ = ["Capabilities", "DecideContext", "Decision", "Docs", "Filter", "FitContext", "Param", "Pipeline",
           "Result", "Scores", "Selector", "__version__"]
