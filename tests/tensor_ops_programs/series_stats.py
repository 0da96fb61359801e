"""Running statistics of a few price series: growth by cumprod, lags by roll, bucket counts by
unique, per-bucket sums by index_add, and gradients of a compounded return."""

import torch

torch.manual_seed(0)
returns = torch.tensor([[0.01, -0.02, 0.03, 0.0, 0.015],
                        [0.02, 0.01, -0.01, 0.005, 0.0]], requires_grad=True)
growth = torch.cumprod(1 + returns, dim=1)
print("growth", growth)
print(growth.grad_fn.name())
final = growth[:, -1].sum()
final.backward()
print("d final / d returns", returns.grad)

# a factor that hits zero: torch's gradient is still exact
factors = torch.tensor([1.5, 0.0, 2.0, 0.5], requires_grad=True)
path = factors.cumprod(0)
(g,) = torch.autograd.grad(path.sum(), factors, create_graph=True)
print("path", path, "grad", g.detach())
(gg,) = torch.autograd.grad(g.pow(2).sum(), factors)
print("second order", gg)

lagged = torch.roll(returns.detach(), shifts=1, dims=1)
print("lagged", lagged)
print("flat roll", torch.roll(torch.arange(6).reshape(2, 3), -2))

buckets = torch.tensor([2, 0, 2, 1, 0, 2])
values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], requires_grad=True)
labels, inverse, counts = torch.unique(buckets, return_inverse=True, return_counts=True)
print("labels", labels, "inverse", inverse, "counts", counts)
sums = torch.zeros(3).index_add(0, inverse, values)
means = sums / counts
print("means", means, means.grad_fn.name())
means.sum().backward()
print("d means / d values", values.grad)

noisy = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 2.0])
print("clean", torch.nan_to_num(noisy, nan=0.0, posinf=9.0, neginf=-9.0))
print("expanded", torch.repeat_interleave(torch.tensor([1, 2, 3]), torch.tensor([2, 0, 1])))
print("rows", torch.arange(4.0).reshape(2, 2).repeat_interleave(2, dim=0))
