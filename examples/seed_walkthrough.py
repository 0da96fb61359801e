"""The seed walkthrough through a remote session: `torch` is a gradserve session.

    gradserve serve --port 50051 &
    python examples/seed_walkthrough.py localhost:50051
"""

import sys

import gradserve.client
from gradserve.client.demo import walkthrough

target = sys.argv[1] if len(sys.argv) > 1 else "localhost:50051"
with gradserve.client.connect(target) as client, client.session() as torch:
    walkthrough(torch)
