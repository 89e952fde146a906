"""Built-in selectors and the lookup that also finds plugged-in ones.

A stage names its selector as a built-in name (``length``), a ``module.path:ClassName`` reference,
or a name registered under the entry-point group ``shardsift.selectors``.
"""
from __future__ import annotations

import difflib
import importlib

from ..api import Decision, Docs, Param, Scores, Selector, count_to_keep, top_k_mask
from ..errors import ConfigError

ENTRY_POINT_GROUP = "shardsift.selectors"

# name -> "module:Class"; modules are imported only when used, so a heavy selector costs nothing
# to a pipeline that does not use it.
BUILTINS: dict[str, str] = {
    "length": "shardsift.selectors.basic:LengthSelector",
    "random": "shardsift.selectors.basic:RandomSelector",
    "minhash_dedup": "shardsift.selectors.minhash.selector:MinHashDedup",
    "exact_dedup": "shardsift.selectors.exact:ExactDedup",
    "perplexity_correlation": "shardsift.selectors.perplexity.selector:PerplexityCorrelationSelector",
    "dsir": "shardsift.selectors.dsir.selector:DSIRSelector",
    "quality_classifier": "shardsift.selectors.quality.selector:QualityClassifier",
    "kmeans_diversity": "shardsift.selectors.diversity.selector:KMeansDiversity",
    "semdedup": "shardsift.selectors.diversity.selector:SemDeDup",
    "combine": "shardsift.selectors.combine:Combine",
    "decontaminate": "shardsift.selectors.decontaminate.selector:Decontaminate",
    "gopher_quality": "shardsift.selectors.quality_rules.gopher_quality:GopherQuality",
    "gopher_repetition": "shardsift.selectors.quality_rules.gopher_repetition:GopherRepetition",
    "c4_quality": "shardsift.selectors.quality_rules.c4_quality:C4Quality",
    "fineweb_quality": "shardsift.selectors.quality_rules.fineweb_quality:FineWebQuality",
    "language": "shardsift.selectors.language.selector:LanguageFilter",
}


def _load_ref(ref: str, where: str) -> type[Selector]:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{where}: cannot import module {module_name!r} ({err})") from None
    try:
        cls = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{where}: module {module_name!r} has no attribute {attr!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, Selector)):
        raise ConfigError(f"{where}: {ref!r} is not a subclass of shardsift.Selector")
    return cls


def plugin_entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points  # scans installed packages: only when a name is not built in

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def resolve(name: str, where: str = "stages") -> type[Selector]:
    """The Selector class for a stage name. Raises ConfigError with the nearest valid name."""
    if ":" in name:
        return _load_ref(name, where)
    if name in BUILTINS:
        return _load_ref(BUILTINS[name], where)
    plugins = plugin_entry_points()
    if name in plugins:
        return _load_ref(plugins[name], where)
    known = sorted(BUILTINS) + sorted(plugins)
    near = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise ConfigError(
        f"{where}: unknown selector {name!r}{hint}; built-in: {', '.join(sorted(BUILTINS))}; "
        "or use module.path:ClassName"
    )


def available() -> dict[str, str]:
    """Every selector name that resolves: built-ins, then entry-point plugins."""
    out = dict(BUILTINS)
    for k, v in plugin_entry_points().items():
        out.setdefault(k, v)
    return out


__all__ = [
    "BUILTINS", "Decision", "Docs", "Param", "Scores", "Selector", "available", "count_to_keep",
    "resolve", "top_k_mask",
]
