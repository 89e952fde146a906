"""``quality_classifier`` with its budget selection decided in the driver over every document's
scores (no ``budget()``): the reference bench_global_budget.py measures the task-based path
against. Loaded as ``budget_in_driver:QualityInDriver`` with bench/ on PYTHONPATH."""
from shardsift.selectors.quality.selector import QualityClassifier


class QualityInDriver(QualityClassifier):
    name = "quality_in_driver"

    def budget(self):
        return None
