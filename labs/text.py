"""Text for the character-level chapters: corpora that exist on every Python install, the
learner's own upload (checked before anything trains on it), and a character vocabulary.

Every refusal is a `TextError` whose message says what is wrong and how to fix it.
"""

from __future__ import annotations

import importlib
import inspect
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import torch

MAX_UPLOAD_BYTES = 2_000_000  # a few novels; more would only slow the first step down
MIN_CHARACTERS = 2_000  # below this a model just memorizes the text
MAX_VOCAB = 128  # rarer characters fold into UNKNOWN
UNKNOWN = "\ufffd"
ENCODINGS = ("utf-8", "utf-16", "cp1252", "latin-1")
# Modules whose source or docstrings ship with every CPython: plain Python, varied, no
# generated tables. The corpus is read at run time, so it is this interpreter's own library.
SOURCE_MODULES = (
    "textwrap", "string", "fractions", "heapq", "bisect", "functools", "difflib", "calendar",
    "shlex", "pprint", "statistics", "argparse", "dataclasses", "enum", "json.decoder",
    "json.encoder", "csv", "queue", "random", "glob", "fnmatch", "configparser",
)  # fmt: skip
DOC_MODULES = SOURCE_MODULES + (
    "os", "os.path", "re", "collections", "itertools", "inspect", "pathlib", "subprocess",
    "threading", "logging", "unittest", "typing", "datetime", "decimal", "contextlib",
)  # fmt: skip


class TextError(ValueError):
    """A text the lab will not train on, with the reason in words."""


@dataclass(frozen=True)
class Corpus:
    name: str
    text: str
    vocab: str  # every character the model can read or write, in index order

    @cached_property
    def ids(self) -> torch.Tensor:
        """The whole text as ids, encoded once per corpus (a worker keeps the stdlib's cached)."""
        return self.encode(self.text)

    def encode(self, text: str) -> torch.Tensor:
        """Character ids; characters outside the vocabulary read as UNKNOWN (or the first).
        Vectorized: a 700 kB corpus takes milliseconds, not the half second of a dict loop."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        known = np.array([ord(c) for c in self.vocab], dtype=np.uint32)
        order = np.argsort(known)
        at = np.clip(np.searchsorted(known[order], codes), 0, len(known) - 1)
        ids = order[at]
        missing = known[ids] != codes
        if missing.any():
            ids[missing] = self.vocab.index(UNKNOWN) if UNKNOWN in self.vocab else 0
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)


def build_vocab(text: str) -> tuple[str, str]:
    """(vocabulary, text): the MAX_VOCAB - 1 most common characters, the rest as UNKNOWN."""
    counts = Counter(text)
    if len(counts) < MAX_VOCAB:
        return "".join(sorted(counts)), text
    keep = {c for c, _ in counts.most_common(MAX_VOCAB - 1)}
    text = "".join(c if c in keep else UNKNOWN for c in text)
    return "".join(sorted(keep | {UNKNOWN})), text


@lru_cache(maxsize=4)
def stdlib(kind: str) -> Corpus:
    """This interpreter's own standard library: its source ("python") or its docstrings ("docs").

    A Python built without source files (some slim images) still has docstrings; if it has
    neither, the message says so."""
    parts = []
    for name in SOURCE_MODULES if kind == "python" else DOC_MODULES:
        try:
            module = importlib.import_module(name)
            with warnings.catch_warnings():  # typing.io and friends warn when their docs are read
                warnings.simplefilter("ignore", DeprecationWarning)
                parts.append(inspect.getsource(module) if kind == "python" else _docstrings(module))
        except (ImportError, OSError, TypeError):
            continue  # a module without source here: the others still make a corpus
    text = "\n".join(p for p in parts if p).replace("\t", "    ")
    if len(text) < MIN_CHARACTERS:
        raise TextError(
            f"This Python install has no {'source files' if kind == 'python' else 'docstrings'} "
            "for its standard library (a slim build?). Choose the other corpus or upload a .txt file."
        )
    vocab, text = build_vocab(text)
    return Corpus(kind, text, vocab)


def _docstrings(module) -> str:
    """The module's docstring and those of its public functions and classes, as prose."""
    docs = [inspect.getdoc(module) or ""]
    for name, obj in sorted(vars(module).items()):
        if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)):
            if getattr(obj, "__module__", None) == module.__name__ and (doc := inspect.getdoc(obj)):
                docs.append(doc)
    return "\n\n".join(d for d in docs if d)


def read_upload(data: bytes, encoding: str = "utf-8", name: str = "the file") -> Corpus:
    """A learner's .txt file, checked: not empty, not too big, not binary, decodable in the
    chosen encoding, long enough to learn from."""
    if not data:
        raise TextError(f"{name} is empty.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise TextError(
            f"{name} is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB. "
            "Upload an excerpt: a few hundred kilobytes is plenty for a character model."
        )
    if encoding not in ENCODINGS:
        raise TextError(f"Unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}.")
    if not encoding.startswith("utf-16") and b"\x00" in data[:65536]:
        raise TextError(
            f"{name} contains NUL bytes: it looks like a binary file (or UTF-16 text: choose that "
            "encoding), not plain text."
        )
    try:
        text = data.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TextError(
            f"{name} is not valid {encoding}: byte 0x{data[err.start]:02x} at position {err.start:,} "
            f"(line {line}) cannot be decoded. Choose the encoding it was saved in (cp1252 or "
            "latin-1 for older Windows or European text), or save it as UTF-8."
        ) from None
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    if _unprintable_share(text[:65536]) > 0.01:
        raise TextError(
            f"{name} is full of control characters when read as {encoding}: it looks like a binary "
            "file (an image, an archive, a document), not plain text."
        )
    if len(text) < MIN_CHARACTERS:
        raise TextError(f"{name} has {len(text):,} characters; a model needs at least {MIN_CHARACTERS:,}.")
    vocab, text = build_vocab(text)
    return Corpus("upload", text, vocab)


def _unprintable_share(text: str) -> float:
    """Share of characters no text file contains: control codes other than line breaks and
    tabs (C0, DEL and the C1 range that latin-1 makes of binary bytes), unassigned code points
    and private-use ones. Random bytes read as latin-1 give about a quarter."""
    if not text:
        return 0.0
    odd = sum(1 for c in text if c not in "\n\r\t\f" and unicodedata.category(c) in ("Cc", "Cn", "Co", "Cs"))
    return odd / len(text)


def check_prompt(prompt: str, corpus_vocab: str, context: int) -> tuple[str, str | None]:
    """A typed prompt the model can read: (prompt to use, notice or None). Raises TextError
    for an empty prompt or characters the model never saw."""
    if not prompt:
        raise TextError("Type a few characters for the model to continue.")
    unseen = sorted({c for c in prompt if c not in corpus_vocab})
    if unseen:
        shown = ", ".join(repr(c) for c in unseen[:8])
        raise TextError(f"The model never saw {shown} in its training text; remove or replace them.")
    if len(prompt) > context:
        return prompt[-context:], f"Only the last {context} characters fit the model's context."
    return prompt, None
