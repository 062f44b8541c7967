"""A tiny Transformer encoder-decoder, written out so every attention map can be looked at.

Pre-LayerNorm blocks. The encoder reads the input with self-attention; the decoder writes the
output one token at a time with causal self-attention and cross-attention to the encoder.
Positions enter only through the positional encoding (none, sinusoidal or learned): attention
itself is blind to order, which is the lesson of chapter 14.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal(positions: int, width: int) -> torch.Tensor:
    """Vaswani et al.'s encoding: sines and cosines of geometrically spaced wavelengths, so every
    position gets a distinct pattern and a fixed offset is a rotation."""
    pos = torch.arange(positions, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10_000.0) * torch.arange(0, width, 2, dtype=torch.float32) / width)
    pe = torch.zeros(positions, width)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : width // 2]
    return pe


class Attention(nn.Module):
    """Multi-head attention that keeps its last weights (batch, heads, queries, keys) when asked."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))
        self.record = False
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, causal: bool = False):
        source = x if memory is None else memory
        n, t, d = x.shape
        split = lambda z: z.view(n, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(source)), split(self.v(source))
        if not self.record:  # training: PyTorch's fused kernel, same numbers, fewer small ops
            mixed = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            return self.out(mixed.transpose(1, 2).reshape(n, t, d))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        if causal:
            scores = scores.masked_fill(
                torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1), -math.inf
            )
        weights = scores.softmax(-1)
        if self.record:
            self.weights = weights.detach()
        return self.out((weights @ v).transpose(1, 2).reshape(n, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class DecoderLayer(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width) for _ in range(3))
        self.self_attn, self.cross_attn = Attention(width, heads), Attention(width, heads)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width))

    def forward(self, y, memory):
        y = y + self.self_attn(self.norm1(y), causal=True)
        y = y + self.cross_attn(self.norm2(y), memory=memory)
        return y + self.ff(self.norm3(y))


class TinyTransformer(nn.Module):
    def __init__(
        self, vocab: int, n_out: int, width: int, heads: int, layers: int, positional: str, max_len: int
    ):
        super().__init__()
        self.positional = positional
        self.src_embed, self.tgt_embed = nn.Embedding(vocab, width), nn.Embedding(vocab, width)
        if positional == "learned":
            self.position = nn.Parameter(0.1 * torch.randn(max_len, width))
        else:
            self.register_buffer("position", sinusoidal(max_len, width), persistent=False)
        self.encoder = nn.ModuleList(EncoderLayer(width, heads) for _ in range(layers))
        self.decoder = nn.ModuleList(DecoderLayer(width, heads) for _ in range(layers))
        self.norm_enc, self.norm_dec = nn.LayerNorm(width), nn.LayerNorm(width)
        self.head = nn.Linear(width, n_out)
        self.scale = math.sqrt(width)

    def positions(self, length: int) -> torch.Tensor:
        """What is added to the token embeddings at each position (zeros without an encoding)."""
        if self.positional == "none":
            return torch.zeros(length, self.position.shape[1], device=self.position.device)
        return self.position[:length]

    def encode_embedded(self, e: torch.Tensor) -> torch.Tensor:
        x = e * self.scale + self.positions(e.shape[1])
        for layer in self.encoder:
            x = layer(x)
        return self.norm_enc(x)

    def decode(self, memory: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        y = self.tgt_embed(tgt_in) * self.scale + self.positions(tgt_in.shape[1])
        for layer in self.decoder:
            y = layer(y, memory)
        return self.head(self.norm_dec(y))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits for every output position, given the true earlier outputs."""
        return self.decode(self.encode_embedded(self.src_embed(src)), tgt_in)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, out_len: int, bos: int) -> torch.Tensor:
        """Write the output one token at a time, each time taking the likeliest."""
        memory = self.encode_embedded(self.src_embed(src))
        tgt = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
        for _ in range(out_len):
            nxt = self.decode(memory, tgt)[:, -1].argmax(-1, keepdim=True)
            tgt = torch.cat([tgt, nxt], dim=1)
        return tgt[:, 1:]

    def attention_layers(self) -> dict[str, list[Attention]]:
        return {
            "encoder self-attention": [layer.attn for layer in self.encoder],
            "decoder cross-attention": [layer.cross_attn for layer in self.decoder],
            "decoder self-attention": [layer.self_attn for layer in self.decoder],
        }

    def record_attention(self, on: bool) -> None:
        for group in self.attention_layers().values():
            for attn in group:
                attn.record, attn.weights = on, None


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())
