"""The shape of the package: no import cycles, a torch-free spec layer, benchmark scripts that import."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import effnet

PACKAGE = Path(effnet.__file__).parent
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# The torch-free core (src/effnet/core/, DESIGN.md's spec, scaling and profile layers with the named variants): it
# imports nothing of effnet outside it but the helpers under every layer, and no torch.
CORE = tuple(sorted(f"effnet.core.{path.stem}" for path in (PACKAGE / "core").glob("*.py") if path.stem != "__init__"))
CORE_MAY_IMPORT = {*CORE, "effnet.core", "effnet._fields", "effnet._io", "effnet._version"}

# Cycles in files under another change; each flips to XPASS (a failure, strict) once broken: then drop it from here.


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module under src/effnet."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict) -> set[str]:
    """The effnet modules one import statement loads (`from effnet.experiments import bench` is the module effnet.experiments.bench)."""

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        return {m for a in node.names if (m := owner(a.name))}
    base = node.module or ""
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    found = set()
    for alias in node.names:
        full = f"{base}.{alias.name}"
        m = full if full in modules else owner(base)
        if m:
            found.add(m)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the effnet modules it imports anywhere: at module level, inside functions (the old
    profile -> zoo -> scaling -> profile cycle hid in function bodies) and under TYPE_CHECKING (a type is a
    dependency too). The package `effnet` also depends on what its lazy `_LAZY` table names. Parent
    packages, which Python imports implicitly, are not edges."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                deps |= _imported(node, module, is_package, modules)
            if module == "effnet" and isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_LAZY" for t in node.targets):
                deps |= {v.value for v in node.value.values if isinstance(v, ast.Constant)}
        deps.discard(module)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan), each a knot of import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _example_cycle(graph: dict[str, set[str]], component: set[str]) -> str:
    """One concrete cycle through a component, as 'a -> b -> a', for the failure message."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        step = next(w for w in sorted(graph[path[-1]]) if w in component)
        if step in seen:
            return " -> ".join(path[path.index(step) :] + [step])
        path.append(step)
        seen.add(step)


def test_the_graph_sees_real_imports() -> None:
    graph = import_graph()
    assert {"effnet.core.spec", "effnet.core.parts"} <= graph["effnet.core.profile"]
    assert "effnet.core.profile" in graph["effnet.core.scaling"]  # scale_to_macs
    assert "effnet.models.factory" in graph["effnet"]  # through the lazy table
    assert {"effnet.core.spec", "effnet.core.zoo", "effnet.core.images"} <= set(CORE)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _example_cycle({"a": {"b"}, "b": {"a"}}, {"a", "b"}) == "a -> b -> a"


def test_no_import_cycles() -> None:
    graph = import_graph()
    new = cycles(graph)
    assert not new, "import cycles: " + "; ".join(_example_cycle(graph, c) for c in new)


def test_the_core_imports_nothing_above_it() -> None:
    graph = import_graph()
    upward = {m: sorted(graph[m] - CORE_MAY_IMPORT) for m in CORE if graph[m] - CORE_MAY_IMPORT}
    assert not upward, f"the core must not import these (move the code up, or pass the data in): {upward}"


def test_the_core_runs_without_torch() -> None:
    code = (
        f"import sys, {', '.join(CORE)}, effnet\n"
        "assert effnet.profile('efficientnet_b0').macs == 385814752\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_top_level_names_resolve() -> None:
    for name in effnet.__all__:
        assert getattr(effnet, name) is not None
    assert callable(effnet.profile) and effnet.profile(effnet.get_spec("b0")).params == 5288548
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        effnet.nope  # noqa: B018
    with pytest.raises(TypeError, match=r"use effnet.profile\(name\)"):
        from effnet.core.profile import profile

        profile("efficientnet_b0")


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_benchmark_scripts_import(script: str) -> None:
    spec = importlib.util.spec_from_file_location(f"benchmarks_{Path(script).stem}", BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs the imports and definitions, not main()
    assert callable(module.main)


def test_the_readme_set_up_commands_are_what_ci_runs() -> None:
    """The README's two commands (set-up + demo, set-up + tests) use scripts/install.sh, and CI runs the test one."""
    root = BENCHMARKS.parent
    readme, ci = (root / "README.md").read_text(), (root / ".ci" / "run").read_text()
    blocks = [block.split("```", 1)[0].strip() for block in readme.split("```bash\n")[1:3]]
    assert blocks == [
        "sh scripts/install.sh && . .venv/bin/activate && effnet demo",
        "sh scripts/install.sh test && . .venv/bin/activate && python -m pytest -q",
    ]
    lines = [line for line in ci.splitlines() if line and not line.startswith("#")]
    assert lines.index("sh scripts/install.sh test") < lines.index(". .venv/bin/activate") < lines.index("python -m pytest -q")
    script = root / "scripts" / "install.sh"
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0  # parses as POSIX sh
    text = script.read_text()
    assert "nvidia-smi" in text and "download.pytorch.org/whl/cpu" in text and "timeout=5" in text  # the CPU build, never a long hang


# ------------------------------------------------------------------ the layer table of docs/architecture.md
ARCHITECTURE = BENCHMARKS.parent / "docs" / "architecture.md"
# Imports that point up the table, by (importer, imported): each with the reason it stays. The test fails when one of
# these is fixed (drop it from here then) as well as when a new one appears.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def layer_table(text: str) -> list[tuple[str, list[str]]]:
    """The rows of the table under '## Layers', top to bottom: (layer, its module paths relative to src/effnet)."""
    section = text.split("## Layers", 1)[1]
    lines = section.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first + 2 :]:  # after the header and the |---| line
        if not line.startswith("|"):
            break
        name, modules = (cell.strip() for cell in line.strip("|").split("|")[:2])
        rows.append((name, re.findall(r"`([^`]+)`", modules)))
    return rows


def layer_of(module: str, rows: list[tuple[str, list[str]]]) -> list[int]:
    """The rows `module` (dotted) belongs to: those naming its file, else those naming its nearest folder."""
    parts = module.split(".")[1:]
    is_package = not parts or (PACKAGE.joinpath(*parts) / "__init__.py").is_file()
    file = "/".join([*parts, "__init__"] if is_package and parts else parts or ["__init__"]) + ".py"
    named = [i for i, (_, paths) in enumerate(rows) if file in paths]
    if named:
        return named
    for depth in range(len(parts) if is_package else len(parts) - 1, 0, -1):
        found = [i for i, (_, paths) in enumerate(rows) if "/".join(parts[:depth]) + "/" in paths]
        if found:
            return found
    return []


def upward_imports(graph: dict[str, set[str]], rows: list[tuple[str, list[str]]]) -> dict[tuple[str, str], str]:
    """(importer, imported) -> 'its layer -> the higher one' for every import that points up the table."""
    layer = {module: layer_of(module, rows)[0] for module in graph}
    return {(m, dep): f"{rows[layer[m]][0]} -> {rows[layer[dep]][0]}" for m, deps in graph.items() for dep in deps if layer[dep] < layer[m]}


def test_the_layer_table_parses_as_meant() -> None:
    rows = layer_table(ARCHITECTURE.read_text())
    names = [name for name, _ in rows]
    assert names[0] == "the package" and names[-1] == "under every layer" and "experiments" in names

    def named(module: str) -> list[str]:
        return [names[i] for i in layer_of(module, rows)]

    assert named("effnet.train.commands") == ["command line"]  # its file beats its folder
    assert named("effnet.train.trainer") == named("effnet.train") == ["train, data"]
    assert named("effnet.models.fast") == named("effnet.models.fast.kernels") == named("effnet.models") == ["models"]
    assert named("effnet.models.model") == named("effnet.models.nn.blocks") == ["build"]  # a file or folder inside models/
    assert named("effnet.experiments.trials") == named("effnet.experiments") == ["trials"]
    assert named("effnet.experiments.study.grid") == ["experiments"] and named("effnet.experiments.study.commands") == ["command line"]
    assert named("effnet.core") == named("effnet.core.spec") == ["the architecture as data"] and named("effnet.core.zoo") == ["named variants"]
    assert named("effnet") == ["the package"] and named("effnet._io") == ["under every layer"]
    table = "## Layers\n\ntext\n\n| layer | modules | what |\n|---|---|---|\n| top | `a/`, `b.py` | x `y.py` |\n| low | `c.py` | z |\n\n| n | `d.py` |"
    toy = layer_table(table)
    assert toy == [("top", ["a/", "b.py"]), ("low", ["c.py"])]  # the second column only, the first table only
    assert layer_of("effnet.c", toy) == [1] and layer_of("effnet.a.x", toy) == [0] and layer_of("effnet.d", toy) == []
    graph = {"effnet.b": {"effnet.c"}, "effnet.c": {"effnet.b"}}
    assert upward_imports(graph, toy) == {("effnet.c", "effnet.b"): "low -> top"}


def test_every_module_is_in_exactly_one_layer_and_every_path_exists() -> None:
    rows = layer_table(ARCHITECTURE.read_text())
    for _, paths in rows:
        for path in paths:
            assert (PACKAGE / path).exists(), f"docs/architecture.md's layer table names {path}, which is not under src/effnet"
    placed = {module: layer_of(module, rows) for module in _modules()}
    unplaced = sorted(m for m, found in placed.items() if not found)
    twice = sorted(m for m, found in placed.items() if len(found) > 1)
    assert not unplaced, f"modules in no row of docs/architecture.md's layer table (add them to a row): {unplaced}"
    assert not twice, f"modules in two rows of the layer table: {twice}"


def test_no_import_points_up_the_layer_table() -> None:
    upward = upward_imports(import_graph(), layer_table(ARCHITECTURE.read_text()))
    new = {edge: why for edge, why in upward.items() if edge not in KNOWN_UPWARD}
    fixed = sorted(set(KNOWN_UPWARD) - set(upward))
    assert not new, f"imports that point up docs/architecture.md's layer table (move the code down, or pass the data in): {new}"
    assert not fixed, f"fixed, so drop them from KNOWN_UPWARD: {fixed}"


# ------------------------------------------------------------------ sizes: modules < 500 lines, functions <= 80
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# Each with its reason; the test fails when one of these fits (drop it from here then) as well as when a new one is too long.
KNOWN_TOO_LONG = {
    "core/zoo.py": "the spec tables (B0-B7, EfficientNetV2, Lite, Table 3's rows): data, allowed by issue 29",
}


def _long_functions(node: ast.AST, prefix: str = "") -> dict[str, int]:
    """'Qualified.name' -> lines (from its def to its last line) of every function in `node` over MAX_FUNCTION_LINES;
    nested functions count in theirs and on their own."""
    found = {}
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            qualified = f"{prefix}{child.name}"
            lines = child.end_lineno - child.lineno + 1
            if not isinstance(child, ast.ClassDef) and lines > MAX_FUNCTION_LINES:
                found[qualified] = lines
            found |= _long_functions(child, f"{qualified}.")
    return found


def too_long() -> dict[str, int]:
    """'path' -> lines of every module of MAX_MODULE_LINES or more, 'path:Qualified.name' -> lines of every function over MAX_FUNCTION_LINES."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name, text = path.relative_to(PACKAGE).as_posix(), path.read_text()
        if len(text.splitlines()) >= MAX_MODULE_LINES:
            found[name] = len(text.splitlines())
        found |= {f"{name}:{function}": lines for function, lines in _long_functions(ast.parse(text)).items()}
    return found


def test_the_size_check_sees_functions_methods_and_nested_ones() -> None:
    body = "\n".join(["x = 1"] * MAX_FUNCTION_LINES)
    code = f"def short():\n    pass\n\n\nclass A:\n    def long(self):\n{textwrap.indent(body, ' ' * 8)}\n\n        def inner():\n{textwrap.indent(body, ' ' * 12)}\n"
    assert _long_functions(ast.parse(code)) == {"A.long": 2 * MAX_FUNCTION_LINES + 3, "A.long.inner": MAX_FUNCTION_LINES + 1}


def test_no_module_or_function_is_too_long() -> None:
    found = too_long()
    new = {name: lines for name, lines in found.items() if name not in KNOWN_TOO_LONG}
    fits = sorted(set(KNOWN_TOO_LONG) - set(found))
    assert not new, f"modules of {MAX_MODULE_LINES} lines or more, functions over {MAX_FUNCTION_LINES} (split them into named steps): {new}"
    assert not fits, f"these fit now, so drop them from KNOWN_TOO_LONG: {fits}"
