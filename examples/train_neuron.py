"""The seed's one-neuron model (sigmoid, binary cross-entropy) trained with SGD on a few points,
on a remote session: `train` is torch code, and here `torch` is a gradserve session.

    gradserve serve --port 50051 &
    python examples/train_neuron.py localhost:50051
"""

import sys
from typing import Any

import gradserve.client


def train(torch: Any, steps: int = 50) -> None:
    """Fit w, b of sigmoid(w * x + b) to five points with SGD, printing the loss as it goes."""
    xs = torch.tensor([0.5, 1.5, -1.0, 2.0, 6.7])
    ys = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0])
    w = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    optimizer = torch.optim.SGD([w, b], lr=0.5)
    for step in range(steps):
        optimizer.zero_grad()
        y_pred = torch.clamp(torch.sigmoid(w * xs + b), 1e-8, 1 - 1e-8)
        loss = -(ys * torch.log(y_pred) + (1 - ys) * torch.log(1 - y_pred)).mean()
        loss.backward()  # one round trip: the forward and backward go together
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step:2d}  loss {loss.item():.4f}")
    print("w =", w, " b =", b)


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "localhost:50051"
    with gradserve.client.connect(target) as client, client.session() as session:
        train(session)
        print(f"{session.round_trips} round trips")
