"""Tables a model can learn from: numeric columns, categorical columns as integer codes, and one
target. A learner's CSV is checked here, with the reason in words when the lab will not use it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_UPLOAD_BYTES = 20_000_000
MAX_ROWS = 100_000  # an epoch of an MLP over 100k rows is a few seconds on one core
MAX_COLUMNS = 50
MIN_ROWS = 50
MAX_CLASSES = 20  # a target with at most this many integer values is treated as classes
MAX_LEVELS = 5_000  # a text column with more distinct values is an id or free text, not a category


class TableError(ValueError):
    """A table the lab will not train on, with the reason in words."""


@dataclass(frozen=True)
class Table:
    name: str
    numeric: dict[str, np.ndarray]  # column -> float32 values (missing filled with the median)
    categorical: dict[str, np.ndarray]  # column -> int64 codes into levels[column]
    levels: dict[str, list[str]]
    target: np.ndarray  # float32 (regression) or int64 class indices
    target_name: str
    classes: list[str] | None = None  # None: regression
    groups: dict[str, np.ndarray] | None = None  # column -> a hidden group per level (generated data)

    @property
    def task(self) -> str:
        return "regression" if self.classes is None else "classification"

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def __len__(self) -> int:
        return len(self.target)


def read_csv(data: bytes, name: str = "the file") -> pd.DataFrame:
    """The bytes of a learner's CSV as a DataFrame, or TableError saying why not."""
    if not data:
        raise TableError(f"{name} is empty.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise TableError(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
    if b"\x00" in data[:65536]:
        raise TableError(
            f"{name} contains NUL bytes: it looks like a binary file (a spreadsheet, an image), not a CSV."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # every byte decodes; the parser judges the rest
    sep = _separator(text)
    width = _header_width(text, sep)  # before parsing: a million columns would take the server minutes
    if width > MAX_COLUMNS:
        raise TableError(f"{name} has {width:,} columns; the limit is {MAX_COLUMNS}.")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, nrows=MAX_ROWS + 1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeError) as err:
        raise TableError(f"{name} could not be read as a CSV: {str(err).strip()[:200]}") from None
    if len(frame) > MAX_ROWS:
        raise TableError(f"{name} has more than {MAX_ROWS:,} rows; upload a sample of it.")
    if frame.shape[1] > MAX_COLUMNS:
        raise TableError(f"{name} has {frame.shape[1]} columns; the limit is {MAX_COLUMNS}.")
    if frame.shape[1] < 2:
        raise TableError(
            f"{name} has {frame.shape[1]} column: it needs a target column and at least one feature "
            "(is it separated by commas, semicolons or tabs?)."
        )
    if len(frame) < MIN_ROWS:
        raise TableError(f"{name} has {len(frame)} rows; a model needs at least {MIN_ROWS}.")
    frame.columns = [str(c).strip() or f"column {i + 1}" for i, c in enumerate(frame.columns)]
    if len(set(frame.columns)) < len(frame.columns):
        raise TableError(f"{name} has two columns with the same name.")
    return frame


def _header_width(text: str, sep: str) -> int:
    """How many columns the header line names (quoted separators counted right)."""
    header = text[: text.find("\n")] if "\n" in text else text
    return len(next(csv.reader([header], delimiter=sep), []))


def _separator(text: str) -> str:
    """Comma, semicolon, tab or bar, whichever the first lines use (never a space: a header
    with spaces in its names would be split)."""
    try:
        return csv.Sniffer().sniff(text[:20000], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def default_target(frame: pd.DataFrame) -> str:
    """A column named like a target, else the last one."""
    for c in frame.columns:
        if c.lower() in ("target", "label", "y", "class", "sales", "price"):
            return c
    return frame.columns[-1]


def table_from_frame(frame: pd.DataFrame, target: str, name: str = "upload") -> Table:
    """Split into numeric and categorical features and a checked target. Numbers stay numbers;
    text columns become categories; a column of one value, or of a different text on every row
    (an id), is dropped, since neither can teach anything."""
    if target not in frame.columns:
        raise TableError(f"There is no column {target!r}; the columns are: {', '.join(frame.columns)}.")
    y = frame[target]
    frame = frame[~y.isna()]
    y = y.dropna()
    if len(frame) < MIN_ROWS:
        raise TableError(
            f"The target {target!r} has only {len(frame)} filled rows; a model needs {MIN_ROWS}."
        )
    numeric_y = pd.to_numeric(y, errors="coerce")
    if numeric_y.isna().any():
        bad = y[numeric_y.isna()].iloc[0]
        raise TableError(
            f"The target {target!r} is not numeric (e.g. {str(bad)[:40]!r}): choose a column of "
            "numbers to predict (or integer class labels)."
        )
    values = numeric_y.to_numpy()
    classes = None
    if np.allclose(values, np.round(values)) and 2 <= len(np.unique(values)) <= MAX_CLASSES:
        uniq = np.unique(values)
        classes = [str(int(v)) for v in uniq]
        target_values = np.searchsorted(uniq, values).astype(np.int64)
    else:
        if np.std(values) == 0:
            raise TableError(
                f"The target {target!r} has one value on every row: there is nothing to predict."
            )
        target_values = values.astype(np.float32)
    numeric, categorical, levels = {}, {}, {}
    for col in frame.columns:
        if col == target:
            continue
        series = frame[col]
        as_number = pd.to_numeric(series, errors="coerce")
        if as_number.notna().sum() >= 0.95 * series.notna().sum() and as_number.notna().any():
            filled = as_number.fillna(as_number.median()).to_numpy(np.float32)
            if np.std(filled) > 0:
                numeric[col] = filled
            continue
        text = series.astype("string").fillna("(missing)")
        codes, uniques = pd.factorize(text, sort=True)
        if 1 < len(uniques) <= min(MAX_LEVELS, len(frame) // 2):
            categorical[col] = codes.astype(np.int64)
            levels[col] = [str(u) for u in uniques]
    if not numeric and not categorical:
        raise TableError(
            "No column besides the target can be used: each holds one value, "
            "or a different text on every row."
        )
    return Table(name, numeric, categorical, levels, target_values, target, classes)


def split(n: int, seed: int, share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation row indices, the same for every model of one seed."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - share)))
    return np.sort(order[:cut]), np.sort(order[cut:])
