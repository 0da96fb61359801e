"""gradserve.client."""
