"""gradserve: autograd as a network service."""

__version__ = "0.2.0"  # = pyproject.toml's version (tests/test_versions.py)
