"""`gradserve demo`: the seed walkthrough, run through a session against a server.

The server's CLI starts an in-process server and calls `run(target)`; this module only uses the
client, so it runs against any server (`python -m gradserve.client.demo host:port`).
"""

from __future__ import annotations

import sys
from typing import Any

from .connection import connect


def walkthrough(torch: Any, say: Any = print) -> None:
    """The seed walkthrough (shared/seed), line for line, with `torch` (a Session, the engine
    or the real module), printing through `say` what the seed prints.

    Lines starting with "#" name each step; the other lines are what the seed prints (the
    notebook's display of a bare expression, `x.grad` on its own line, is a `say` here). This is
    the one copy: `gradserve demo`, examples/seed_walkthrough.py and the tests that compare it
    with real torch (engine, session, eager session) all run it.
    """
    say("# y = x**2, and dy/dx by backward()")
    x = torch.tensor(3.0, requires_grad=True)
    y = x**2
    say(x)
    say(y)
    y.backward()
    say(x.grad)

    say("# z = sin(x**2): the chain rule")
    x = torch.tensor(3.0, requires_grad=True)
    y = x**2
    z = torch.sin(y)
    say(z)
    say(y)
    z.backward()
    say(x.grad)

    say("# one neuron, gradients by hand")
    x = torch.tensor(6.7)  # Input feature
    y = torch.tensor(0)  # Output label
    w = torch.tensor(1.0)
    b = torch.tensor(0.0)

    def binary_cross_entropy_loss(y_pred: Any, y_true: Any) -> Any:
        epsilon = 1e-8  # To prevent log(0)
        y_pred = torch.clamp(y_pred, epsilon, 1 - epsilon)
        return -(y_true * torch.log(y_pred) + (1 - y_true) * torch.log(1 - y_pred))

    z = w * x + b
    y_pred = torch.sigmoid(z)
    loss = binary_cross_entropy_loss(y_pred, y)
    say(loss)

    dloss_dy_pred = (y_pred - y) / (y_pred * (1 - y_pred))
    dy_pred_dz = y_pred * (1 - y_pred)
    dz_dw = x
    dz_db = 1
    dL_dw = dloss_dy_pred * dy_pred_dz * dz_dw  # noqa: N806 - the seed's names
    dL_db = dloss_dy_pred * dy_pred_dz * dz_db  # noqa: N806
    say(f"Manual Gradient of loss dL_dw: {dL_dw}")
    say(f"dL_db: {dL_db}")

    say("# the same neuron with autograd")
    x = torch.tensor(6.7)
    y = torch.tensor(0.0)
    w = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    z = w * x + b
    y_pred = torch.sigmoid(z)
    loss = binary_cross_entropy_loss(y_pred, y)
    say(z, y_pred, loss)
    loss.backward()
    say(f"Autograd Gradient of loss dL_dw: {w.grad}")
    say(f"dL_db: {b.grad}")

    say("# vectors: mean of x**2")
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x**2
    say(y)
    y = y.mean()
    say(y)
    y.backward()
    say(x.grad)

    say("# gradients accumulate until zeroed")
    x = torch.tensor(2.0, requires_grad=True)
    y = x**2
    y.backward()
    say(x.grad)
    for _ in range(5):
        y = x**2
        y.backward()
        say(x.grad)
    say(x.grad.zero_())

    say("# turning gradient tracking off: requires_grad_(False), detach(), no_grad()")
    x = torch.tensor(2.0, requires_grad=True)
    say(x)
    x.requires_grad_(False)
    say(x)
    x = torch.tensor(2.0, requires_grad=True)
    say(x)
    z = x.detach()
    say(z)
    y = x**2
    y.backward()
    say(x.grad)
    y = z**2
    try:
        y.backward()  # the seed comments this out: it fails, z is detached
    except RuntimeError as exc:
        say(f"RuntimeError: {exc}")

    x = torch.tensor(2.0, requires_grad=True)
    y = x**2
    say(y)
    with torch.no_grad():
        y = x**2
        say(y)

def run(target: str, **connect_options: Any) -> int:
    """Run the walkthrough in a new session on `target`; returns an exit status (0)."""
    with connect(target, **connect_options) as client, client.session() as session:
        print(f"# gradserve demo: the seed walkthrough through a session on {target}")
        walkthrough(session)
        print(f"# {session.round_trips} round trips")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else "localhost:50051"))
