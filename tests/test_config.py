import pytest

from shardsift.errors import ConfigError
from shardsift.pipeline.config import apply_overrides, parse_config, parse_size

BASE = {"input": {"path": "x"}, "output": {"path": "y"}}


def cfg(**kw):
    d = dict(BASE)
    d.update(kw)
    return d


def test_valid_config_resolves_defaults():
    c = parse_config(cfg(stages=[{"length": {"min_words": 5}}, "random" if False else {"random": {"keep": 0.5}}]))
    assert c.input.text_column == "text" and c.output.max_shard_bytes == 256 * 10**6
    assert (c.input.batch_size, c.input.batch_bytes, c.output.row_group_bytes) == (8192, 4 * 2**20, 8 * 2**20)
    assert [s.name for s in c.stages] == ["length", "random"]
    assert c.resolved()["stages"][0]["length"]["min_words"] == 5


@pytest.mark.parametrize("raw, needle", [
    (cfg(stagse=[]), "config: unknown key 'stagse' (did you mean 'stages'?)"),
    ({"input": {"path": "x", "text_colum": "t"}, "output": "y"}, "input: unknown key 'text_colum' (did you mean 'text_column'?)"),
    (cfg(workers="two"), "config.workers: expected int, got str 'two'"),
    (cfg(workers=0), "config.workers: 0 is out of range"),
    (cfg(stages=[{"random": {"keep": 1.5}}]), "stages[0].random.keep: 1.5 is out of range (must be <= 1)"),
    (cfg(stages=[{"random": {"keep": 0}}]), "stages[0].random.keep: 0 is out of range (must be > 0)"),
    (cfg(stages=[{"random": {"kep": 0.5}}]), "stages[0].random: unknown key 'kep' (did you mean 'keep'?)"),
    (cfg(stages=[{"random": {"keep": 0.5, "n": 3}}]), "give either keep (0.5) or n (3), not both"),
    (cfg(stages=[{"lenght": {}}]), "stages[0]: unknown selector 'lenght' (did you mean 'length'?)"),
    (cfg(stages=[{"length": {"min_words": "ten"}}]), "stages[0].length.min_words: expected int, got str 'ten'"),
    (cfg(stages=[{"length": {"min_words": 10, "max_words": 5}}]), "length.max_words: 5 is below min_words (10)"),
    (cfg(stages=[{"nosuchmod.sub:Thing": {}}]), "stages[0]: cannot import module 'nosuchmod.sub'"),
    (cfg(executor="rey"), "config.executor: 'rey' is not one of local, ray (did you mean 'ray'?)"),
    (cfg(output={"path": "y", "max_shard_bytes": "lots"}), "output.max_shard_bytes: 'lots' is not a size"),
    (cfg(output={"path": "y", "row_group_bytes": 0}), "output.row_group_bytes: 0 must be positive"),
    (cfg(input={"path": "x", "batch_bytes": "4 parsecs"}), "input.batch_bytes: '4 parsecs' is not a size"),
    ({"output": "y"}, "config.input: a value is required"),
])
def test_config_errors_name_the_key(raw, needle):
    with pytest.raises(ConfigError) as ei:
        parse_config(raw)
    assert needle in str(ei.value)
    assert "\n" not in str(ei.value)


def test_sizes():
    assert parse_size("256MB", "k") == 256_000_000
    assert parse_size("1GiB", "k") == 2**30
    assert parse_size(1000, "k") == 1000


def test_cli_overrides():
    raw = apply_overrides({"input": {"path": "a", "text_column": "t"}, "output": "b", "workers": 4},
                          input="c", output="d", workers=1, seed=7, executor="local")
    c = parse_config(raw)
    assert c.input.path == "c" and c.input.text_column == "t" and c.output.path == "d"
    assert (c.workers, c.seed, c.executor) == (1, 7, "local")
