"""A one-layer causal self-attention model over token sequences (Embedding, query/key/value
projections, F.scaled_dot_product_attention with is_causal=True, LayerNorm), trained with AdamW
to predict the next token of a repeating pattern: plain torch code that runs unchanged on a
gradserve session.

    python examples/nn_layers/causal_attention.py                  # real torch
    python examples/nn_layers/causal_attention.py localhost:50051  # a gradserve session
"""

import math
import sys


def main(torch):
    nn, F = torch.nn, torch.nn.functional

    class TinyAttention(nn.Module):
        def __init__(self, vocab, dim):
            super().__init__()
            self.embed = nn.Embedding(vocab, dim)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.norm = nn.LayerNorm(dim)
            self.out = nn.Linear(dim, vocab)

        def forward(self, tokens):
            h = self.embed(tokens)
            q, k, v = self.qkv(h).chunk(3, dim=-1)
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.out(self.norm(h + attended))

    torch.manual_seed(2)
    vocab, dim, length = 5, 8, 6
    model = TinyAttention(vocab, dim)
    print(model)
    pattern = torch.tensor([[(i + j) % vocab for i in range(length + 1)] for j in range(4)])
    inputs, targets = pattern[:, :-1], pattern[:, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    for step in range(10):
        optimizer.zero_grad()
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        if step % 3 == 0:
            print(f"step {step}  loss {loss.item():.4f}  perplexity {math.exp(loss.item()):.3f}")
    with torch.no_grad():
        print("next tokens", model(inputs).argmax(dim=-1)[0].tolist())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        import gradserve.client

        with gradserve.client.connect(sys.argv[1]) as client, client.session() as session:
            main(session)
    else:
        import torch

        main(torch)
