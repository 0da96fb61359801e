"""A tiny convolutional autoencoder (Conv2d down, ConvTranspose2d and Upsample up) trained with
Adam on random 16 x 16 images: plain torch code that runs unchanged on a gradserve session.

    python examples/nn_layers/conv_autoencoder.py                  # real torch
    python examples/nn_layers/conv_autoencoder.py localhost:50051  # a gradserve session
"""

import sys


def main(torch):
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(4, 1, 3, padding=1), nn.Sigmoid(),
    )
    print(model)
    images = torch.rand(8, 1, 16, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(6):
        optimizer.zero_grad()
        reconstruction = model(images)
        loss = nn.functional.mse_loss(reconstruction, images)
        loss.backward()
        optimizer.step()
        print(f"step {step}  loss {loss.item():.5f}")
    print("reconstruction", tuple(reconstruction.shape), reconstruction.grad_fn.name())
    print("decoder weight grad norm", f"{model[4].weight.grad.norm().item():.4f}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        import gradserve.client

        with gradserve.client.connect(sys.argv[1]) as client, client.session() as session:
            main(session)
    else:
        import torch

        main(torch)
