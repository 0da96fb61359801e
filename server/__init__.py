"""gradserve.server."""


def package_version() -> str:
    """gradserve's installed version ("unknown" when run from a tree that is not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("gradserve")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
