"""The package's layering, read from the source's import statements (module level and inside
functions alike): no import circles, evaluation and export independent of training, the
demo and the benchmarks independent of training, analysis scripts outside the package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def import_graph(*folders: str) -> dict[str, set[str]]:
    """module -> the project modules it imports. `from pkg import name` counts as importing
    `pkg.name` where that is a module, else `pkg`."""
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                if subs:
                    deps.update(subs)
                elif node.module in modules:
                    deps.add(node.module)
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle_and_ignores_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert cycles(import_graph("pop3d_ros", "tools")) == []


def _reaches(graph, start: str, prefix: str) -> list[str]:
    """Modules under `prefix` that `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return sorted(m for m in seen if m == prefix or m.startswith(prefix + "."))


def test_evaluation_export_demo_and_bench_do_not_reach_training():
    graph = import_graph("pop3d_ros", "scripts")
    starts = [m for m in graph if m.startswith(("pop3d_ros.evaluation", "pop3d_ros.export"))]
    starts += [m for m in graph if m.startswith(("scripts.demo", "scripts.bench"))]
    assert len(starts) > 10
    offending = {m: _reaches(graph, m, "pop3d_ros.training") for m in starts}
    assert {m: r for m, r in offending.items() if r} == {}
    export = [m for m in graph if m.startswith("pop3d_ros.export")]
    into_eval = {m: _reaches(graph, m, "pop3d_ros.evaluation") for m in export}
    assert {m: r for m, r in into_eval.items() if r} == {}


def test_training_holds_no_analysis_script_or_evaluation_protocol():
    names = {p.stem for p in (ROOT / "pop3d_ros" / "training").rglob("*.py")}
    analysis = {"protocol_breakdown", "occ_target_ablation", "teacher_bounds", "render_bench"}
    protocols = {"evaluate", "occ3d", "metrics", "retrieval", "eval_labels", "eval_volume"}
    assert names & (analysis | protocols) == set()
    assert analysis <= {p.stem for p in (ROOT / "tools").glob("*.py")}
