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
