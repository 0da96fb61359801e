"""The package layout DESIGN.md fixes: one distribution, three layers under `gradserve.*`."""

import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_layers_import_under_gradserve_namespace():
    for name, folder in [("gradserve.engine", "engine"), ("gradserve.server", "server"),
                         ("gradserve.client", "client")]:
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve().parent == ROOT / folder


def test_no_top_level_layer_modules_installed(tmp_path):
    # Run outside the checkout: `python -m pytest` puts the checkout itself on sys.path.
    probe = ("import importlib.util as u;"
             "print([n for n in ('engine', 'server', 'client') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]", f"top-level modules installed: {out}"
