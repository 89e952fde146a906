"""The package's layering, read from its source: imports point down only, no import cycle, no
module much over 500 lines, and nothing that changes the process importing the library."""
import ast
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shardsift")

# rank of each top-level part: a module imports only parts of its rank or below
LAYERS = {
    "errors": 0, "params": 0, "columns": 0, "text": 0, "api": 0, "tokenizer": 0, "token_chunks": 0,
    "selectors": 1,
    "io": 2,
    "engine": 3,
    "pipeline": 4, "output": 4, "evaluate": 4, "report": 5, "report_text": 4, "compare": 5, "sample": 4, "lm_losses": 4,
    "losses": 4, "cli": 6, "__main__": 6, "__init__": 6,
}
MAX_LINES = 500


def modules():
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield ("shardsift" if rel == "__init__" else "shardsift." + rel.removesuffix(".__init__")), path


ALL = dict(modules())


def read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def imported(module: str, path: str, top_level_only: bool):
    """The shardsift modules ``module`` imports (relative imports resolved)."""
    tree = ast.parse(read(path))
    is_pkg = path.endswith("__init__.py")
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("shardsift"):
                for alias in node.names:  # `from . import storage` names a module, not the package
                    sub = f"{target}.{alias.name}"
                    yield sub if sub in ALL else target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("shardsift"):
                    yield alias.name


def test_every_part_has_a_layer():
    assert {part(m) for m in ALL} <= set(LAYERS), {part(m) for m in ALL} - set(LAYERS)


@pytest.mark.parametrize("module", sorted(ALL))
def test_imports_point_down(module):
    if module == "shardsift":
        return  # the package's __getattr__ loads the Python API on demand
    mine = LAYERS[part(module)]
    for target in imported(module, ALL[module], top_level_only=False):
        if target not in ALL or target == "shardsift":
            continue
        assert LAYERS[part(target)] <= mine, f"{module} imports {target}, a layer above it"


def test_selectors_never_import_the_engine_or_io():
    for module, path in ALL.items():
        if part(module) == "selectors":
            for target in imported(module, path, top_level_only=False):
                assert part(target) not in ("engine", "io", "pipeline", "cli", "report", "output"), (module, target)


def test_no_import_cycle():
    graph = {m: {t for t in imported(m, p, top_level_only=True) if t in ALL and t != m} for m, p in ALL.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("module", sorted(ALL))
def test_module_size(module):
    n = read(ALL[module]).count("\n")
    assert n <= MAX_LINES, f"{module}: {n} lines"


FORBIDDEN = [
    (r"environ\[[^]]+\]\s*=(?!=)", "writes an environment variable"),
    (r"environ\.(setdefault|pop|update|clear)\(", "changes the environment"),
    (r"os\.putenv|os\.unsetenv", "changes the environment"),
    (r"set_memory_pool", "switches Arrow's memory pool"),
    (r"gc\.freeze|gc\.disable", "changes the garbage collector"),
    (r"_set_madvise_hugepage|numpy\._core|numpy\.core\.multiarray", "reaches into NumPy's private API"),
    (r"pyarrow\._(?!_)", "reaches into pyarrow's private API"),
    (r"numba\.pycc", "builds kernels ahead of time"),
]


@pytest.mark.parametrize("module", sorted(ALL))
def test_nothing_changes_the_importing_process(module):
    src = read(ALL[module])
    for pattern, what in FORBIDDEN:
        m = re.search(pattern, src)
        assert m is None, f"{module} {what}: {m.group(0)!r}"
