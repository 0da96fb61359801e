"""gradserve.server."""


def package_version() -> str:
    """gradserve's version (the release this server is)."""
    from gradserve import __version__

    return __version__
