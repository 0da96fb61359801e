"""gradserve.server."""
