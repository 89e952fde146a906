"""``minhash_dedup``: near-duplicate removal across all shards, in four steps, every one columnar
or compiled.

1. shingles (score, per shard; :mod:`.shingles`): word n-grams (5 by default) of the normalized
   text: Unicode lowercase (Arrow), whitespace runs collapsed, ASCII punctuation dropped unless
   ``strip_punctuation: false``; or character n-grams with ``shingle: char``. One 64-bit hash per
   shingle (words hashed as :func:`shardsift.text.tokenize` does). A document shorter than n
   tokens is one shingle (all of it).
2. signatures (score; :mod:`.signatures`): ``bands * rows`` MinHash values, by one permutation
   hashing with optimal densification (default), seeded multiply-shift permutations, or exact
   ones modulo 2^61 - 1, fused with the word shingling in one numba kernel; each band of ``rows``
   values is hashed to one 64-bit band key and only the band keys leave the shard (``8 * bands``
   bytes per document), with the signature's independent values (``n_sig_values``).
3. candidates (decide, global; :mod:`.lsh`): documents with identical signatures are joined
   without reading them when a pair below the threshold could share them only with probability
   t^m < 1e-9, m their independent values; then, for each band, documents with equal keys form a bucket. The
   grouping runs in memory when ``40 * documents`` bytes fit in ``memory_budget``; otherwise each
   band is partitioned to files in the work dir (same buckets, same order, same clusters).
4. verification and clustering (:mod:`.verify`): the candidates' texts are read back from their
   shards (``ctx.read_texts``, one pass per shard, whichever process scored), their shingle sets
   rebuilt, and every candidate pair is checked with the exact Jaccard of its sets before
   union-find joins it (``verify: true``, the default). One survivor per cluster by ``keep``.

Bands and rows: by default the largest ``rows`` whose S-curve ``1 - (1 - t^rows)^bands`` (with
``bands = num_perm // rows``) is at least ``min_candidate_prob`` at the threshold t; for t = 0.8,
128 permutations, 0.99: 21 bands x 6 rows, candidate probability 0.998 at J = 0.8.
"""
from .lsh import candidate_probability, choose_bands
from .selector import MinHashDedup
from .shingles import shingle_hashes
from .signatures import MERSENNE61, minhash_signatures, permutations

__all__ = ["MERSENNE61", "MinHashDedup", "candidate_probability", "choose_bands", "minhash_signatures",
           "permutations", "shingle_hashes"]
