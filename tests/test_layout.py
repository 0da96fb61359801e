"""The package layout DESIGN.md fixes: one distribution, three layers under `gradserve.*`."""

import importlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_layers_import_under_gradserve_namespace():
    for name, folder in [("gradserve.engine", "engine"), ("gradserve.server", "server"),
                         ("gradserve.client", "client")]:
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve().parent == ROOT / folder


def test_no_top_level_layer_modules_installed():
    for name in ("engine", "server", "client"):
        assert importlib.util.find_spec(name) is None, f"a top-level module {name!r} is installed"
