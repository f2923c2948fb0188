"""The package's shape: no import cycles, the front door's names, and the layer contract."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

import selfimprove

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "selfimprove"

SEED_CLASSES = (
    "SelfImprovingNeuralSystem",
    "SelfImprovementEngine",
    "AdaptivePlasticitySystem",
    "SelfImprovementIntegration",
    "SelfImprovementMetrics",
    "ModelImprovementTask",
    "HormoneSystemController",
    "GeneticTriggerSystem",
    "BrainStateAggregator",
    "SelfImprover",
)


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> package modules it imports: every import statement counted, whether at module
    level, inside a function or under ``TYPE_CHECKING``."""
    mods = _modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                targets = [name] + [f"{name}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] != root.name:
                    continue
                found = resolve(target)
                if found and found != mod:
                    graph[mod].add(found)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one module."""
    names = sorted(graph)
    index = {n: i for i, n in enumerate(names)}
    rows = [index[a] for a in names for _ in graph[a]]
    cols = [index[b] for a in names for b in graph[a]]
    adjacency = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names), len(names)))
    _, labels = connected_components(adjacency, directed=True, connection="strong")
    groups: dict[int, list[str]] = {}
    for name, label in zip(names, labels, strict=True):
        groups.setdefault(int(label), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import x\n"
    )
    (pkg / "c.py").write_text("def f():\n    from . import a\n")
    assert import_cycles(import_graph(pkg)) == [["pkg.a", "pkg.sub.b"]]


def test_the_package_has_no_import_cycle() -> None:
    assert import_cycles(import_graph(PACKAGE)) == []


def test_no_module_inside_the_package_imports_the_front_door() -> None:
    graph = import_graph(PACKAGE)
    importers = sorted(m for m, deps in graph.items() if "selfimprove" in deps)
    assert importers == []


@pytest.mark.parametrize("name", SEED_CLASSES)
def test_seed_classes_come_from_the_front_door(name: str) -> None:
    cls = getattr(selfimprove, name)
    assert isinstance(cls, type)
    assert (cls.__doc__ or "").strip(), f"{name} has no docstring"
    assert name in selfimprove.__all__


def test_every_front_door_name_resolves_from_its_one_home() -> None:
    for name in selfimprove.__all__:
        if name == "__version__":
            continue
        home = importlib.import_module(selfimprove._HOMES[name])
        assert getattr(selfimprove, name) is getattr(home, name)
    assert sorted([*selfimprove._HOMES, "__version__"]) == sorted(selfimprove.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = selfimprove.nope  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_layer() -> None:
    code = (
        "import sys, selfimprove; "
        "print(sorted(m for m in sys.modules if m.startswith('selfimprove.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"


def test_layers_contract_is_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a dev dependency: pip install -e '.[dev]'"
    proc = subprocess.run([lint], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout
