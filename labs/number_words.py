"""Chapter 21's task: numbers into English words, 4071 → "four thousand seventy one".

Inputs are digits (one token each), outputs are words (one token each, then an end token), so
the two sequences differ in length and the right word for a position depends on digits that may
lie anywhere in the number: "seventy" is the 7, but "thousand" is where the 4 stands, counted
from the end. Every number is generated, so nothing is downloaded and any length can be drawn.
"""

from __future__ import annotations

import torch

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ("", "thousand", "million", "billion")
PAD, BOS, EOS = 0, 1, 2  # output tokens 0-2; the words follow
SPECIALS = ("·", "▶", "■")
WORDS = [*SPECIALS, *ONES, *TENS, "hundred", *SCALES[1:]]
INDEX = {w: i for i, w in enumerate(WORDS)}
DIGITS = 10  # input tokens: the digits 0-9
MAX_DIGITS = 3 * len(SCALES)  # up to 999 billion ...


def words_of(number: int) -> list[str]:
    """English words for 0 <= number < 10**12, without "and" or hyphens."""
    if number == 0:
        return ["zero"]
    words, scale = [], 0
    while number:
        number, group = divmod(number, 1000)
        if group:
            words = _below_a_thousand(group) + ([SCALES[scale]] if scale else []) + words
        scale += 1
    return words


def _below_a_thousand(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words = [ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        words += [TENS[rest // 10 - 2]] + ([ONES[rest % 10]] if rest % 10 else [])
    elif rest:
        words.append(ONES[rest])
    return words


def longest_output(digits: int) -> int:
    """Word tokens of the longest number with this many digits, plus the end token."""
    return max(len(words_of(int(f"{d}" * digits))) for d in (7, 1)) + 1


def random_numbers(n: int, digits: int, g: torch.Generator) -> list[int]:
    """n numbers of exactly `digits` digits (the first not 0, unless it is the only one)."""
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    return torch.randint(lo, 10**digits, (n,), generator=g).tolist()


def encode(numbers: list[int], digits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (n, digits), outputs (n, longest + 1) padded with PAD after the end token)."""
    src = torch.tensor([[int(c) for c in str(x).zfill(digits)] for x in numbers])
    outs = [[INDEX[w] for w in words_of(x)] + [EOS] for x in numbers]
    tgt = torch.full((len(numbers), max(map(len, outs))), PAD)
    for row, out in enumerate(outs):
        tgt[row, : len(out)] = torch.tensor(out)
    return src, tgt


def make_batch(n: int, digits: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return encode(random_numbers(n, digits, g), digits)


def written_length(tokens: torch.Tensor) -> int:
    """Tokens written up to and including the end token (all of them if it never came)."""
    ends = (tokens == EOS).nonzero()
    return int(ends[0]) + 1 if len(ends) else len(tokens)


def text_of(tokens) -> list[str]:
    """Output tokens as words, up to (not including) the end token."""
    words = []
    for t in tokens:
        if int(t) == EOS:
            break
        words.append(WORDS[int(t)])
    return words


def parse_number(typed: str, max_digits: int) -> int:
    """A learner's typed number, or a ValueError that says what to type."""
    cleaned = typed.replace(",", "").replace(" ", "").replace("_", "")
    if not cleaned or not all("0" <= c <= "9" for c in cleaned):
        raise ValueError("Type a whole number in digits, like 4071 (commas and spaces are fine).")
    number = int(cleaned)
    if len(str(number)) > max_digits:
        raise ValueError(
            f"The models learned numbers of up to {max_digits} digits; {len(str(number))} is more. "
            "Type a shorter one, or raise Longest number and train again."
        )
    return number
