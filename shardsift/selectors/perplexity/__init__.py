"""``perplexity_correlation``: data selection by perplexity correlations (Thrush et al. 2024).

Given the bits per byte (BPB) of many public language models on a set of texts or domains (the loss
matrix) and the same models' benchmark errors, texts whose loss is most correlated with the error
are the ones whose likelihood "predicts" benchmark skill; pretraining on them should help.

- :mod:`.inputs`: reading and checking the loss matrix and the benchmark errors;
- :mod:`.estimators`: the five correlation estimators and the capped-simplex projections;
- :mod:`.classifier`: the fastText include/exclude classifier and its training sample;
- :mod:`.selector`: the stage, :class:`PerplexityCorrelationSelector`.

The manual is docs/perplexity.md.
"""
from .inputs import align_inputs, read_errors, read_losses, write_example_inputs
from .selector import PerplexityCorrelationSelector

__all__ = ["PerplexityCorrelationSelector", "align_inputs", "read_errors", "read_losses", "write_example_inputs"]
