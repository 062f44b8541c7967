"""A GRU encoder–decoder, with or without additive (Bahdanau) attention.

Both read the input with the same GRU encoder and write the output one token at a time with a
GRU cell. They differ in what the decoder sees of the input at each output step:
- plain (Cho et al., 2014): the encoder's last state, the same vector at every step: the whole
  input squeezed into `width` numbers, however long it is;
- attention (Bahdanau et al., 2015): a mix of all the encoder's states, weighted afresh at each
  step by a small net that scores each input position against the decoder's state:
  score_i = v · tanh(W s + U h_i), weights = softmax(scores), context = Σ weights_i h_i.
Same sizes otherwise, so the difference in what they learn is the attention.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from labs.number_words import BOS, EOS, PAD


class Encoder(nn.Module):
    """A GRU over the input's embeddings. One-way, a digit's state knows the digits up to it;
    both ways (Bahdanau's choice), half the state reads from each end, so every state also
    knows what follows, e.g. how many digits are left."""

    def __init__(self, vocab: int, width: int, both_ways: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.gru = nn.GRU(
            width, width // 2 if both_ways else width, batch_first=True, bidirectional=both_ways
        )

    def forward(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.read(self.embed(src))

    def read(self, embedded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(every position's state (B, S, W), the last state (B, W)) from the digits' embeddings
        (Integrated Gradients starts here)."""
        states, last = self.gru(embedded)
        return states, torch.cat(list(last), -1)  # one direction's last state, or both


class Additive(nn.Module):
    """Bahdanau's scoring net: how well each input state fits the decoder's state."""

    def __init__(self, width: int):
        super().__init__()
        self.query = nn.Linear(width, width, bias=False)
        self.key = nn.Linear(width, width)
        self.v = nn.Linear(width, 1, bias=False)

    def forward(self, state: torch.Tensor, keys: torch.Tensor, states: torch.Tensor):
        """(context (B, W), weights (B, S)); `keys` is U h_i, computed once per input."""
        scores = self.v(torch.tanh(self.query(state)[:, None] + keys))[..., 0]
        weights = scores.softmax(-1)
        return torch.bmm(weights[:, None], states)[:, 0], weights


class Seq2Seq(nn.Module):
    def __init__(self, in_vocab: int, out_vocab: int, width: int, attention: bool, both_ways: bool = False):
        super().__init__()
        self.encoder = Encoder(in_vocab, width, both_ways)
        self.embed = nn.Embedding(out_vocab, width)
        self.cell = nn.GRUCell(2 * width, width)
        self.attention = Additive(width) if attention else None
        self.out = nn.Linear(2 * width, out_vocab)

    def start(self, src: torch.Tensor, embedded: torch.Tensor | None = None) -> dict:
        """What the decoder keeps of the input: its states (and their keys) or its last state.
        Given `embedded`, the encoder reads those embeddings instead of looking `src` up."""
        states, last = self.encoder(src) if embedded is None else self.encoder.read(embedded)
        memory = {"state": last, "last": last, "states": states}
        if self.attention is not None:
            memory["keys"] = self.attention.key(states)
        return memory

    def step(self, memory: dict, previous: torch.Tensor):
        """One output position: (scores over the output words (B, V), attention weights or None).
        Updates memory["state"]."""
        state = memory["state"]
        if self.attention is None:
            context, weights = memory["last"], None
        else:
            context, weights = self.attention(state, memory["keys"], memory["states"])
        state = self.cell(torch.cat([self.embed(previous), context], -1), state)
        memory["state"] = state
        return self.out(torch.cat([state, context], -1)), weights

    def forward(self, src, target, teacher: float = 1.0, g: torch.Generator | None = None, embedded=None):
        """Scores (B, T, V) for every position of `target`, and attention weights (B, T, S) or
        None. Each step reads the true previous word with probability `teacher` (teacher
        forcing), else the model's own last guess."""
        memory = self.start(src, embedded)
        previous = torch.full_like(target[:, 0], BOS)
        scores, attention = [], []
        for t in range(target.shape[1]):
            logits, weights = self.step(memory, previous)
            scores.append(logits)
            attention.append(weights)
            previous = target[:, t]
            if teacher < 1.0:
                own = logits.argmax(-1)
                coin = torch.rand(len(own), generator=g).to(own.device) < teacher
                previous = torch.where(coin, previous, own)
        maps = torch.stack(attention, 1) if self.attention is not None else None
        return torch.stack(scores, 1), maps


def loss_of(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per output word, padding after the end token left out."""
    return F.cross_entropy(scores.flatten(0, 1), target.flatten(), ignore_index=PAD)


@torch.no_grad()
def greedy(model: Seq2Seq, src: torch.Tensor, longest: int):
    """The model writes alone, its most likely word each time: (tokens (B, longest) with PAD after
    the end, attention (B, longest, S) or None)."""
    memory = model.start(src)
    previous = torch.full((len(src),), BOS, device=src.device)
    ended = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    written, maps = [], []
    for _ in range(longest):
        logits, weights = model.step(memory, previous)
        previous = logits.argmax(-1).masked_fill(ended, PAD)
        written.append(previous)
        maps.append(weights)
        ended |= previous == EOS
        if ended.all():
            break
    tokens = torch.stack(written, 1)
    return tokens, (torch.stack(maps, 1) if model.attention is not None else None)


@torch.no_grad()
def beam_search(model: Seq2Seq, src: torch.Tensor, longest: int, width: int) -> torch.Tensor:
    """The `width` most likely partial outputs kept at each step, for every input at once; the
    finished output with the highest total log-probability wins. Width 1 is greedy. Returns
    tokens (B, longest), PAD after the end."""
    b, vocab = len(src), model.out.out_features
    memory = {k: v.repeat_interleave(width, 0) for k, v in model.start(src).items()}
    previous = torch.full((b * width,), BOS, device=src.device)
    # start with one live beam per input: the copies would otherwise fill the beam with twins
    score = torch.full((b, width), float("-inf"), device=src.device)
    score[:, 0] = 0.0
    ended = torch.zeros(b * width, dtype=torch.bool, device=src.device)
    history = torch.empty(b * width, 0, dtype=torch.long, device=src.device)
    for _ in range(longest):
        logits, _ = model.step(memory, previous)
        logp = logits.log_softmax(-1)
        # an ended beam may only continue with PAD, at no cost
        logp[ended] = float("-inf")
        logp[ended, PAD] = 0.0
        total = (score.reshape(-1, 1) + logp).reshape(b, width * vocab)
        score, pick = total.topk(width, dim=1)
        beam, token = pick // vocab, pick % vocab
        rows = (beam + torch.arange(b, device=src.device)[:, None] * width).reshape(-1)
        memory["state"] = memory["state"][rows]
        history = torch.cat([history[rows], token.reshape(-1, 1)], 1)
        ended = ended[rows] | (token.reshape(-1) == EOS)
        previous = token.reshape(-1)
        if ended.all():
            break
    best = score.argmax(1) + torch.arange(b, device=src.device) * width
    return history[best]
