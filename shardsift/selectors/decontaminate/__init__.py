"""``decontaminate``: drop the documents that share a word n-gram with an evaluation set.

``words`` normalizes and tokenizes (lowercase, punctuation and symbols dropped), ``ngram_set``
builds the evaluation sets' n-gram hashes (sorted, unique, with the benchmark each came from) and
looks documents up in them, ``selector`` is the stage. See docs/decontaminate.md.
"""
