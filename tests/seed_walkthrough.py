"""The seed walkthrough (shared/seed), line for line, as a function of the `torch` to use.

Tests run it with real torch, with `gradserve.engine` and with a remote session, and compare the
printed lines. Only the notebook's display of a bare expression (`x.grad` on its own line) is
turned into a `print`, since a script does not echo values.
"""


def run(torch):
    x = torch.tensor(3.0, requires_grad=True)
    y = x**2
    print(x)
    print(y)
    y.backward()
    print(x.grad)

    x = torch.tensor(3.0, requires_grad=True)
    y = x**2
    z = torch.sin(y)
    print(z)
    print(y)
    z.backward()
    print(x.grad)

    # One-neuron model, manual gradients.
    x = torch.tensor(6.7)  # Input feature
    y = torch.tensor(0)  # Output label
    w = torch.tensor(1.0)
    b = torch.tensor(0.0)

    def binary_cross_entropy_loss(y_pred, y_true):
        epsilon = 1e-8  # To prevent log(0)
        y_pred = torch.clamp(y_pred, epsilon, 1 - epsilon)
        return -(y_true * torch.log(y_pred) + (1 - y_true) * torch.log(1 - y_pred))

    z = w * x + b
    y_pred = torch.sigmoid(z)
    loss = binary_cross_entropy_loss(y_pred, y)
    print(loss)

    dloss_dy_pred = (y_pred - y) / (y_pred * (1 - y_pred))
    dy_pred_dz = y_pred * (1 - y_pred)
    dz_dw = x
    dz_db = 1
    dL_dw = dloss_dy_pred * dy_pred_dz * dz_dw
    dL_db = dloss_dy_pred * dy_pred_dz * dz_db
    print(f"Manual Gradient of loss dL_dw: {dL_dw}")
    print(f"dL_db: {dL_db}")

    # The same with autograd.
    x = torch.tensor(6.7)
    y = torch.tensor(0.0)
    w = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    z = w * x + b
    y_pred = torch.sigmoid(z)
    loss = binary_cross_entropy_loss(y_pred, y)
    print(z, y_pred, loss)
    loss.backward()
    print(f"Autograd Gradient of loss dL_dw: {w.grad}")
    print(f"dL_db: {b.grad}")

    # Vectors.
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x**2
    print(y)
    y = y.mean()
    print(y)
    y.backward()
    print(x.grad)

    # Gradient accumulation and clearing.
    x = torch.tensor(2.0, requires_grad=True)
    y = x**2
    y.backward()
    print(x.grad)
    for _ in range(5):
        y = x**2
        y.backward()
        print(x.grad)
    print(x.grad.zero_())

    # Disabling gradient tracking.
    x = torch.tensor(2.0, requires_grad=True)
    print(x)
    x.requires_grad_(False)
    print(x)
    x = torch.tensor(2.0, requires_grad=True)
    print(x)
    z = x.detach()
    print(z)
    y = x**2
    y.backward()
    print(x.grad)
    y = z**2
    try:
        y.backward()  # the seed comments this out: it fails, z is detached
    except RuntimeError as exc:
        print(f"RuntimeError: {exc}")

    x = torch.tensor(2.0, requires_grad=True)
    y = x**2
    print(y)
    with torch.no_grad():
        y = x**2
        print(y)
