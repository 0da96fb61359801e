"""Nearest neighbours by cdist, a GLU block trained for a few steps with batched products
(baddbmm), and block-structured matrices from kron and the diagonals."""

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
points = torch.randn(40, 3)
queries = torch.randn(5, 3)
d_mm = torch.cdist(queries, points)  # 40 rows: torch's matrix-product path
d_direct = torch.cdist(queries, points, compute_mode="donot_use_mm_for_euclid_dist")
print("nearest", d_mm.argmin(dim=1), d_direct.argmin(dim=1))
print("agree", torch.allclose(d_mm, d_direct, atol=1e-5))
print("manhattan", torch.cdist(queries[:2], points[:3], p=1).round(decimals=3))
print(d_mm.grad_fn, d_direct.grad_fn)


class GatedBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * dim)
        self.glu = nn.GLU(dim=-1)
        self.mix = nn.Parameter(torch.eye(dim).repeat(2, 1, 1) * 0.5)

    def forward(self, x):
        h = self.glu(self.proj(x))
        return torch.baddbmm(h, h, self.mix, beta=1.0, alpha=0.5)


block = GatedBlock(4)
print(block)
opt = torch.optim.SGD(block.parameters(), lr=0.1)
x = torch.randn(2, 3, 4)
target = torch.randn(2, 3, 4)
for step in range(3):
    opt.zero_grad()
    loss = F.mse_loss(block(x), target)
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.5f}")
print("glu", F.glu(torch.arange(8.0).reshape(2, 4), dim=1))

a = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
k = torch.kron(a, torch.eye(2))
print(k, k.grad_fn.name())
k.sum().backward()
print("kron grad", a.grad)
m = torch.arange(9.0).reshape(3, 3)
print("diag", torch.diag(m), torch.diag(m, 1), m.diagonal(-1))
print("embed", torch.diag_embed(torch.tensor([[1.0, 2.0], [3.0, 4.0]])))
print("total", torch.addbmm(torch.zeros(2, 2), torch.ones(3, 2, 4), torch.ones(3, 4, 2)))
