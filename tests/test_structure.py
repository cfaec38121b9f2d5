"""The package's import graph: no cycles, every module in one layer, and each layer imports
only the layers below it (the stages not each other)."""

import ast
import pkgutil
from pathlib import Path

import dpedkit

STAGES = ("align", "patches", "train", "enhance", "report")
ROOT = Path(dpedkit.__file__).parent

# Lowest first. A module belongs to the layer of its longest matching prefix; a new module
# must be placed here (the test fails until it is). ``shared``: the layer's modules may
# import one another (the cycle test still applies); otherwise only a module's own package.
LAYERS = (
    ("foundation", True, ("dpedkit.errors", "dpedkit.options", "dpedkit.fs", "dpedkit.imageops", "dpedkit.metrics",
                          "dpedkit.camera_files", "dpedkit.progress")),
    ("files and runs", True, ("dpedkit.imageio", "dpedkit.raw", "dpedkit.layout", "dpedkit.parallel",
                              "dpedkit.runner")),
    ("networks", False, ("dpedkit.model",)),
    ("stages", False, tuple(f"dpedkit.{s}" for s in STAGES if s != "report")),
    ("consumers", False, ("dpedkit.evaluate", "dpedkit.export", "dpedkit.report", "dpedkit.testing")),
    ("entry points", True, ("dpedkit.demo", "dpedkit.api", "dpedkit.cli", "dpedkit.__main__")),
)


def layer_of(name: str) -> int | None:
    best = None
    for i, (_, _, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    """Every import that goes to a higher layer, or sideways where the layer forbids it."""
    bad = []
    for n, deps in g.items():
        if n == "dpedkit":
            continue
        ln = layer_of(n)
        for m in deps:
            lm = layer_of(m) if m != "dpedkit" else len(LAYERS) - 1     # __version__: for the entry points
            own_package = n.split(".")[:2] == m.split(".")[:2]
            if lm > ln or (lm == ln and not LAYERS[ln][1] and not own_package):
                bad.append(f"{n} ({LAYERS[ln][0]}) → {m} ({LAYERS[lm][0]})")
    return bad


def modules() -> dict[str, Path]:
    out = {}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="dpedkit."):
        spec = info.module_finder.find_spec(info.name)
        out[info.name] = Path(spec.origin)
    out["dpedkit"] = ROOT / "__init__.py"
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """dpedkit modules that ``name`` imports, at the top or inside functions."""
    found = set()
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                found.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports_of(n, p, set(mods)) for n, p in mods.items()}


def test_the_import_graph_has_no_cycle():
    g = graph()
    assert len(g) > 20, "walked too few modules: the test would pass vacuously"
    state: dict[str, int] = {}
    cycles = []

    def visit(n, stack):
        state[n] = 1
        for m in sorted(g[n]):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2
    for n in sorted(g):
        if n not in state:
            visit(n, [n])
    # the package itself re-exports the API lazily (inside functions); leave it out of cycles
    cycles = [c for c in cycles if "dpedkit" not in c]
    assert not cycles, cycles


def test_stages_do_not_import_each_other():
    g = graph()
    bad = []
    for n, deps in g.items():
        parts = n.split(".")
        if len(parts) < 2 or parts[1] not in STAGES:
            continue
        for m in deps:
            mp = m.split(".")
            if len(mp) > 1 and mp[1] in STAGES and mp[1] != parts[1]:
                bad.append(f"{n} → {m}")
    assert not bad, bad


def test_every_module_is_in_a_layer_and_imports_only_below_it():
    g = graph()
    unplaced = [n for n in g if n != "dpedkit" and layer_of(n) is None]
    assert not unplaced, f"add these modules to LAYERS in tests/test_structure.py: {unplaced}"
    assert not upward_imports(g), upward_imports(g)


def test_the_layer_checker_sees_a_planted_upward_and_sideways_import():
    g = {"dpedkit.fs": {"dpedkit.runner"}, "dpedkit.runner": set(), "dpedkit.model.networks": {"dpedkit.align.core"},
         "dpedkit.align.core": {"dpedkit.patches.search"}, "dpedkit.patches.search": set(),
         "dpedkit.layout": {"dpedkit.runner"}}
    bad = upward_imports(g)
    assert any(b.startswith("dpedkit.fs ") for b in bad) and any(b.startswith("dpedkit.model.networks ") for b in bad)
    assert any(b.startswith("dpedkit.align.core ") for b in bad) and not any(b.startswith("dpedkit.layout ") for b in bad)


def test_the_checker_sees_a_planted_cycle(tmp_path):
    # the checker itself must be able to fail: two modules importing each other
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from dpedkit.b import x\n")
    b.write_text("from dpedkit.a import y\n")
    known = {"dpedkit.a", "dpedkit.b"}
    assert imports_of("dpedkit.a", a, known) == {"dpedkit.b"}
    assert imports_of("dpedkit.b", b, known) == {"dpedkit.a"}
