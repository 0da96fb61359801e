"""gradserve: autograd as a network service."""

__version__ = "0.1.0"
