"""gradserve.engine."""
