import pytest

from shardsift.engine.config import apply_overrides, load_yaml, parse_config
from shardsift.errors import ConfigError
from shardsift.params import parse_size

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
    assert parse_size("256MiB", "k") == 256 * 2**20
    assert parse_size("1GiB", "k") == 2**30
    assert parse_size("1.5kB", "k") == 1500
    assert parse_size(1000, "k") == 1000
    c = parse_config(cfg(output={"path": "y", "max_shard_bytes": "2MB", "row_group_bytes": "1MiB"},
                         input={"path": "x", "batch_bytes": "3MB"}))
    assert (c.output.max_shard_bytes, c.output.row_group_bytes, c.input.batch_bytes) == (2 * 10**6, 2**20, 3 * 10**6)


@pytest.mark.parametrize("text, needle", [
    ("workers: 1\nworkers: 2\n", "duplicate key 'workers' at line 2"),
    ("input:\n  path: a\n  text_column: t\n  path: b\n", "duplicate key 'path' at line 4"),
    ("stages:\n  - random: {keep: 0.5, keep: 0.2}\n", "duplicate key 'keep' at line 2"),
])
def test_duplicate_yaml_keys_are_refused(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_yaml(str(path))
    assert str(ei.value) == f"{path}: {needle}"


def test_stages_are_built_through_their_real_init():
    """The engine constructs a selector with its class's __init__: one that loads state there has
    it, and one whose __init__ refuses its parameters is a config error naming the stage."""
    import shardsift

    class Words(shardsift.Filter):
        words = shardsift.Param(list, [], "words that drop a document")

        def __init__(self, **params):
            super().__init__(**params)
            self.lookup = {w.lower() for w in self.words}

        def keep(self, docs):
            raise AssertionError("not run here")

    st = parse_config(cfg(stages=[Words(words=["Spam"])])).stages[0]
    assert st.build().lookup == {"spam"} and st.build() is not st.instance

    class Refuses(shardsift.Selector):
        def __init__(self, path):
            super().__init__()
            self.path = path

    from shardsift.engine.config import StageConfig

    st = StageConfig(name="refuses", params={"nope": 1}, cls=Refuses, where="stages[0].refuses")
    with pytest.raises(ConfigError, match=r"stages\[0\]\.refuses: .*unexpected keyword argument 'nope'"):
        st.build()


def test_cli_overrides():
    raw = apply_overrides({"input": {"path": "a", "text_column": "t"}, "output": "b", "workers": 4},
                          input="c", output="d", workers=1, seed=7, executor="local")
    c = parse_config(raw)
    assert c.input.path == "c" and c.input.text_column == "t" and c.output.path == "d"
    assert (c.workers, c.seed, c.executor) == (1, 7, "local")
