"""The import graph: no cycles (counting imports inside functions too), and edge/ stands alone.

edge/ runs on the device: it never imports export/ (TensorFlow) or controlroom/ (the security desk's server).
controlroom/ never imports edge/ modules that pull in numpy or OpenCV. Read from the source with ast, so a lazy
import inside a function counts as much as one at the top.
"""

import ast
from pathlib import Path
from typing import Dict, List, Set

from conftest import ROOT

PACKAGES = ("edge", "export", "controlroom")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def graph() -> Dict[str, Set[str]]:
    mods = {module_name(p): p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")}
    out: Dict[str, Set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: List[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if is_pkg else m.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                names = [mod] + ["%s.%s" % (mod, a.name) for a in node.names]
            for n in names:
                # the longest known module the name refers to (a package, a submodule, or a name in one)
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                if n and n != m:
                    out[m].add(n)
    return out


def cycles(g: Dict[str, Set[str]]) -> List[List[str]]:
    found, state, stack = [], {}, []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(g[u]):
            if state.get(v) == 1:
                found.append(stack[stack.index(v) :] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for u in sorted(g):
        if u not in state:
            visit(u)
    return found


def _is_package_init_edge(a: str, b: str) -> bool:
    # a package's __init__ and its own submodules (edge.backends -> edge.backends.litert -> edge.backends) is
    # the plugin registry pattern: the submodule needs the base class, the package discovers the plugins
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_import_cycles():
    g = graph()
    bad = [c for c in cycles(g) if not all(_is_package_init_edge(x, y) for x, y in zip(c, c[1:]))]
    assert not bad, "import cycles: " + "; ".join(" -> ".join(c) for c in bad)


def test_edge_never_imports_export_or_controlroom():
    g = graph()
    bad = sorted(
        "%s -> %s" % (m, d)
        for m, ds in g.items()
        if m.split(".")[0] == "edge"
        for d in ds
        if d.split(".")[0] in ("export", "controlroom")
    )
    assert not bad, bad


def test_the_checker_sees_a_cycle(tmp_path):
    """The cycle finder itself: a -> b -> a is found, a -> b is not."""
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert "edge.config" in graph()["edge.pipeline"]  # relative imports are resolved
