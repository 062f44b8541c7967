"""Chapter 21 after training: the learner's own number, written by both models and explained.

Where a model with attention looked (its attention weights) and what its words depended on
(Integrated Gradients of each written word's score to each input digit's embedding) are two
different questions; here they are drawn side by side and their agreement is measured.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients

from labs import number_words as nw
from labs.core.attribution import evaluating
from labs.core.snapshot import to_numpy
from labs.encoder_decoder import Seq2Seq, beam_search, greedy


def number_tokens(number: int) -> torch.Tensor:
    return torch.tensor([[int(c) for c in str(number)]])


def write(model: Seq2Seq, number: int, beam: int) -> dict:
    """The model's words for one number, greedy and with the beam, and whether each is right."""
    src = number_tokens(number)
    longest = nw.longest_output(src.shape[1]) + 2
    with evaluating(model):
        written, _ = greedy(model, src, longest)
        beamed = beam_search(model, src, longest, beam)
    right = nw.words_of(number)
    words = {"greedy": nw.text_of(written[0]), "beam": nw.text_of(beamed[0])}
    return {"right": right, **words, **{f"{k} right": w == right for k, w in words.items()}}


def explain(model: Seq2Seq, number: int) -> dict:
    """For each word the model writes (greedy) and its end token: Integrated Gradients of that
    word's score to the digits' embeddings (baseline: all-zero embeddings), summed over the
    embedding; beside it, the attention weights when the model has them."""
    src = number_tokens(number)
    with evaluating(model):
        written, maps = greedy(model, src, nw.longest_output(src.shape[1]) + 2)
        written = written[:, : nw.written_length(written[0])]
        embedded = model.encoder.embed(src).detach()
        rows, deltas = [], []
        for j in range(written.shape[1]):
            ig = IntegratedGradients(  # IG batches its path points: the words read must follow
                lambda e, j=j: model(src.expand(len(e), -1), written.expand(len(e), -1), embedded=e)[0][:, j]
            )
            attr, delta = ig.attribute(
                embedded,
                baselines=0 * embedded,
                target=int(written[0, j]),
                n_steps=64,
                return_convergence_delta=True,
            )
            rows.append(to_numpy(attr[0].sum(-1)))
            deltas.append(float(delta.abs().max()))
    attribution = np.stack(rows)  # (words, digits)
    result = {
        "inputs": list(str(number)),
        "outputs": [*nw.text_of(written[0]), nw.SPECIALS[nw.EOS]][: written.shape[1]],
        "attribution": attribution,
        "delta": max(deltas),
    }
    if maps is not None:
        attention = to_numpy(maps[0, : written.shape[1]])
        result["attention"] = attention
        result["agreement"] = agreement(attention, attribution)
    return result


def agreement(attention: np.ndarray, attribution: np.ndarray) -> float:
    """Share of written words whose most-attended digit is also the digit their score depended
    on most (largest |attribution|). Chance is about 1 / digits."""
    looked = attention.argmax(1)
    mattered = np.abs(attribution).argmax(1)
    return float((looked == mattered).mean())
