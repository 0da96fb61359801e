"""The package layout DESIGN.md fixes: one distribution, four layers under `gradserve.*`, and
the only directions their imports may go."""

import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_layers_import_under_gradserve_namespace():
    for name, folder in [("gradserve.surface", "surface"), ("gradserve.engine", "engine"),
                         ("gradserve.server", "server"), ("gradserve.client", "client")]:
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve().parent == ROOT / folder


def test_no_top_level_layer_modules_installed(tmp_path):
    # Run outside the checkout: `python -m pytest` puts the checkout itself on sys.path.
    probe = ("import importlib.util as u;"
             "print([n for n in ('surface', 'engine', 'server', 'client') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]", f"top-level modules installed: {out}"


# Which imports each layer may not make (DESIGN.md: client -> surface <- engine <- server).
FORBIDDEN_IMPORTS = {
    "surface": ("grpc", "google", "torch", "gradserve.engine", "gradserve.server",
                "gradserve.client", "gradserve.v1"),
    "engine": ("grpc", "google", "torch", "gradserve.server", "gradserve.client", "gradserve.v1"),
    "client": ("torch", "gradserve.engine", "gradserve.server"),
    "server": ("torch", "gradserve.client"),
}
# server/cli.py is the distribution's one command: `gradserve demo` runs the client's demo and
# reports the client's errors.
ALLOWED_IMPORTS = {("server/cli.py", "gradserve.client.demo"),
                   ("server/cli.py", "gradserve.client")}


def _imports(path: Path) -> list[str]:
    """Absolute module names a file imports (relative imports stay inside its layer)."""
    import ast

    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_layers_import_only_downwards():
    bad = []
    for layer, forbidden in FORBIDDEN_IMPORTS.items():
        for path in sorted((ROOT / layer).glob("*.py")):
            for name in _imports(path):
                where = str(path.relative_to(ROOT))
                if (any(name == f or name.startswith(f + ".") for f in forbidden)
                        and (where, name) not in ALLOWED_IMPORTS):
                    bad.append(f"{where} imports {name}")
    assert not bad, "\n".join(bad)


def test_surface_imports_only_numpy_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"numpy", "gradserve", "__future__"}
    bad = [f"{path.name} imports {name}" for path in sorted((ROOT / "surface").glob("*.py"))
           for name in _imports(path)
           if name.split(".")[0] not in allowed or
           (name.startswith("gradserve") and not name.startswith("gradserve.surface"))]
    assert not bad, bad


# --- the engine's own modules: an acyclic import graph -------------------------------------------

# Function-level imports of engine modules that are there for a reason other than a cycle
# ((module, imported module) -> why). A late import that only dodges a cycle does not belong here:
# the cycle is the bug.
LAZY_ENGINE_IMPORTS: dict[tuple[str, str], str] = {}


def _sibling(node, module: str) -> list[str]:
    """The engine modules an import statement inside engine/`module` names."""
    import ast

    engine = {p.stem for p in (ROOT / "engine").glob("*.py")}
    pkg = "gradserve.engine"
    if isinstance(node, ast.Import):
        return [a.name[len(pkg) + 1:].split(".")[0] for a in node.names
                if a.name.startswith(pkg + ".")]
    if node.level == 0:
        if node.module == pkg:
            return [a.name for a in node.names if a.name in engine]
        if node.module and node.module.startswith(pkg + "."):
            return [node.module[len(pkg) + 1:].split(".")[0]]
        return []
    if node.level != 1:
        return []
    if node.module:
        return [node.module.split(".")[0]]
    # `from . import x`: the submodule x, or a name of the package itself
    return [a.name if a.name in engine else "__init__" for a in node.names]


def _is_type_checking(test) -> bool:
    import ast

    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _engine_imports() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """The engine's module-level import graph (module -> engine modules it imports as it loads),
    and every import of an engine module made inside a function or class body
    (module, imported, line). Imports under `if TYPE_CHECKING:` never run and are left out."""
    import ast

    graph: dict[str, set[str]] = {}
    late: list[tuple[str, str, int]] = []
    for path in sorted((ROOT / "engine").glob("*.py")):
        module = path.stem
        graph[module] = set()
        tree = ast.parse(path.read_text(), str(path))

        def visit(node, nested: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for name in _sibling(child, module):  # noqa: B023
                        if nested:
                            late.append((module, name, child.lineno))  # noqa: B023
                        elif name != module:  # noqa: B023
                            graph[module].add(name)  # noqa: B023
                elif isinstance(child, ast.If) and _is_type_checking(child.test):
                    for stmt in child.orelse:
                        visit(ast.Module(body=[stmt], type_ignores=[]), nested)
                else:
                    visit(child, nested or isinstance(
                        child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)))

        visit(tree, False)
    return graph, late


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (as the modules along it), or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_engine_import_graph_is_acyclic():
    graph, _ = _engine_imports()
    graph.pop("__init__")  # the package imports everything; a submodule's `from . import x`
    # names the submodule x, so the package is not on any path between modules
    for deps in graph.values():
        deps.discard("__init__")
    cycle = _cycle(graph)
    assert cycle is None, "engine modules import each other in a circle: " + " -> ".join(cycle)


def test_engine_modules_import_siblings_at_module_level():
    _, late = _engine_imports()
    bad = [f"engine/{m}.py:{line} imports {name} inside a function" for m, name, line in late
           if (m, name) not in LAZY_ENGINE_IMPORTS]
    assert not bad, "\n".join(bad)


def test_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


# --- Tensor's attached methods, declared for type checkers ---------------------------------------

def _load_methods_generator():
    import importlib.util

    path = ROOT / "scripts" / "gen_tensor_methods.py"
    spec = importlib.util.spec_from_file_location("gen_tensor_methods", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tensor_method_declarations_are_fresh():
    # Adding an op (or a @public method) without regenerating the declarations fails here.
    fresh = _load_methods_generator().render()
    committed = (ROOT / "engine" / "tensor_methods.pyi").read_text()
    assert committed == fresh, (
        "engine/tensor_methods.pyi is stale: run scripts/gen_tensor_methods.py")


def test_every_runtime_tensor_method_is_declared():
    # Whatever Tensor has at runtime is declared somewhere a type checker reads: in tensor.py's
    # class body or in tensor_methods.pyi (so the two together leave nothing to __getattr__).
    import ast

    import gradserve.engine as ge

    declared = set()
    for path, cls in ((ROOT / "engine" / "tensor.py", "Tensor"),
                      (ROOT / "engine" / "tensor_methods.pyi", "TensorMethods")):
        tree = ast.parse(path.read_text())
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                declared.add(node.name)
            elif isinstance(node, ast.Assign):
                declared.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                declared.add(node.target.id)
        if cls == "Tensor":
            slots = next(n for n in body if isinstance(n, ast.Assign)
                         and any(getattr(t, "id", "") == "__slots__" for t in n.targets))
            declared.update(ast.literal_eval(slots.value))
    # dunders: the operators count; class machinery (__module__, __slots__, __weakref__...) and
    # object's own (__init_subclass__...) do not
    missing = sorted(n for n, v in vars(ge.Tensor).items() if n not in declared and not (
        n.startswith("__") and n.endswith("__") and (hasattr(object, n) or not callable(v))))
    assert not missing, f"Tensor attributes no type checker sees: {missing}"
    ops = [name for name, op in ge.OPS.items() if op.method and op.inputs and not op.variadic]
    assert ops and not [n for n in ops if n not in declared]


def test_mypy_sees_tensor_methods(tmp_path):
    # The declarations at work: an op method's result is a Tensor, a misspelled method or
    # keyword is an error. gradserve.* resolves through a tree of links (the editable install's
    # import hook is invisible to mypy).
    import importlib.util

    if importlib.util.find_spec("mypy") is None:
        import pytest

        pytest.skip("mypy is not installed")
    tree = tmp_path / "tree" / "gradserve"
    tree.mkdir(parents=True)
    (tree / "__init__.py").write_text("")
    (tree / "py.typed").write_text("")
    for layer in ("engine", "surface"):
        (tree / layer).symlink_to(ROOT / layer)
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import gradserve.engine as ge\n"
        "t = ge.tensor(1.0)\n"
        "reveal_type(ge.tensor(1.0).sin())\n"
        "reveal_type(t.unbind(0))\n"
        "reveal_type(t * 2)\n"
        "reveal_type(t.add_(1, alpha=2))\n"
        "t.sinn()\n"
        "t.sum(dimm=0)\n"
        "t.backward()\n")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--python-version", "3.10", "--follow-imports=silent",
         "--no-incremental", "--config-file", "", str(probe)],
        cwd=tmp_path, env={"MYPYPATH": str(tmp_path / "tree"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True).stdout
    lines = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("probe.py:")]
    assert lines == [
        'note: Revealed type is "gradserve.engine.tensor.Tensor"',
        'note: Revealed type is "tuple[gradserve.engine.tensor.Tensor, ...]"',
        'note: Revealed type is "gradserve.engine.tensor.Tensor"',
        'note: Revealed type is "gradserve.engine.tensor.Tensor"',
        'error: "Tensor" has no attribute "sinn"  [attr-defined]',
        'error: Unexpected keyword argument "dimm" for "sum" of "TensorMethods"; did you mean '
        '"dim"?  [call-arg]',
        'note: "sum" defined in "gradserve.engine.tensor_methods"',
    ], out
