"""A bag-of-words classifier: embeddings with gradients scaled by word frequency, documents
pooled by index_add_ over token offsets built with repeat_interleave."""

import torch
import torch.nn as nn

torch.manual_seed(0)
docs = [[1, 4, 4, 2], [3, 1], [4, 4, 4, 0, 2]]
labels = torch.tensor([1, 0, 1])
tokens = torch.tensor([t for d in docs for t in d])
lengths = torch.tensor([len(d) for d in docs])
doc_of_token = torch.repeat_interleave(torch.arange(len(docs)), lengths)
print("doc of token", doc_of_token)
vocab, freq = torch.unique(tokens, return_counts=True)
print("vocab", vocab, "freq", freq)

emb = nn.Embedding(5, 3, scale_grad_by_freq=True)
head = nn.Linear(3, 2)
print(emb)
opt = torch.optim.SGD(list(emb.parameters()) + list(head.parameters()), lr=0.5)
for step in range(4):
    opt.zero_grad()
    vecs = emb(tokens)
    pooled = torch.zeros(len(docs), 3).index_add_(0, doc_of_token, vecs)
    pooled = pooled / lengths.unsqueeze(1)
    loss = nn.functional.cross_entropy(head(pooled), labels)
    loss.backward()
    if step == 0:
        print("embedding grad", emb.weight.grad.round(decimals=4))
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
print("pooled grad_fn", pooled.grad_fn.name())
