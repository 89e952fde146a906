"""The dedup selectors, DSIR and k-means diversity decided the driver's way (every shard's scores concatenated, ``decide``),
for tests/test_sharded_dedup.py to compare with the engine's decide as tasks. Importable by worker
processes (the tests put this folder on PYTHONPATH)."""
from shardsift import Selector
from shardsift.selectors.diversity.selector import KMeansDiversity
from shardsift.selectors.dsir.selector import DSIRSelector
from shardsift.selectors.exact import ExactDedup
from shardsift.selectors.minhash import MinHashDedup


class MinHashInDriver(MinHashDedup):
    decide_sharded = Selector.decide_sharded


class ExactInDriver(ExactDedup):
    decide_sharded = Selector.decide_sharded


class DSIRInDriver(DSIRSelector):
    def budget(self):
        return None


class KMeansInDriver(KMeansDiversity):
    decide_sharded = Selector.decide_sharded
