"""A small CNN with GroupNorm, InstanceNorm2d and adaptive average pooling, trained with SGD and
momentum to classify random images into three classes: plain torch code that runs unchanged on
a gradserve session.

    python examples/nn_layers/groupnorm_cnn.py                  # real torch
    python examples/nn_layers/groupnorm_cnn.py localhost:50051  # a gradserve session
"""

import sys


def main(torch):
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.norm1 = nn.GroupNorm(4, 8)
            self.conv2 = nn.Conv2d(8, 8, 3)
            self.norm2 = nn.InstanceNorm2d(8, affine=True)
            self.pool = nn.AdaptiveAvgPool2d((2, 2))
            self.head = nn.Linear(32, 3)

        def forward(self, x):
            x = F.relu(self.norm1(self.conv1(x)))
            x = F.relu(self.norm2(self.conv2(x)))
            return self.head(torch.flatten(self.pool(x), 1))

    torch.manual_seed(1)
    net = Net()
    print(net)
    print(sum(p.numel() for p in net.parameters()), "parameters")
    x = torch.randn(12, 3, 10, 10)
    y = torch.randint(0, 3, (12,))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(8):
        optimizer.zero_grad()
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        accuracy = (logits.argmax(dim=1) == y).float().mean().item()
        print(f"epoch {epoch}  loss {loss.item():.4f}  accuracy {accuracy:.3f}")
    with torch.no_grad():
        print("predictions", net(x).argmax(dim=1).tolist())
    print("norm1.weight", net.norm1.weight)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        import gradserve.client

        with gradserve.client.connect(sys.argv[1]) as client, client.session() as session:
            main(session)
    else:
        import torch

        main(torch)
