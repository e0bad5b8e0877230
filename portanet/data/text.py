"""Character-level language modelling: text as integer ids, and sampling from a network.

:func:`load_text` reads a UTF-8 file, or an offline default every machine has (the source of
the running interpreter's standard library); :class:`CharText` turns a text into ids with a
train/validation split and context windows; :func:`sample_next` and :func:`generate` draw new
ids from a network's logits. Ids and windows are host (NumPy) int64 arrays; every random draw
comes from portanet's seeded generator, so :func:`portanet.set_seed` makes runs repeat.
"""

from __future__ import annotations

import math
import os
import sysconfig
from pathlib import Path

from .._checks import fraction, integer, one_of, positive
from ..backend import host_array_view, namespace, rng, to_numpy
from ..errors import DataError, InputError, ShapeError

STDLIB_CHARACTERS = 1_000_000  # how much of the standard library's source load_text() gives
SPLITS = ("train", "validation")


def _read(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error}): convert it first, e.g. "
                        f"iconv -t UTF-8 {path.name}") from None


def load_text(path=None, limit=None) -> str:
    """The text of the UTF-8 file at ``path``, at most ``limit`` characters (default: all).

    Without a path, an offline default that every machine has: the source of the running
    interpreter's standard library, its top-level ``*.py`` files (``sysconfig``'s "stdlib"
    folder) in name order, joined; the first ``limit`` characters, default 1 000 000. The same
    interpreter always gives the same text. DataError for a file that is missing, unreadable,
    not UTF-8 or empty.
    """
    if limit is not None:
        limit = integer("limit", limit)
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(f"path must be a file name or path, got {type(path).__name__}")
        text = _read(Path(path))
        if not text:
            raise DataError(f"{path} is empty: give a file that holds text")
        return text[:limit]
    folder = Path(sysconfig.get_paths()["stdlib"])
    limit = limit or STDLIB_CHARACTERS
    parts, size = [], 0
    for file in sorted(folder.glob("*.py")):
        if size >= limit:
            break
        parts.append(_read(file))
        size += len(parts[-1])
    if not size:
        raise DataError(f"no Python source found in {folder} (the default text): give the path "
                        "of a UTF-8 text file instead")
    return "".join(parts)[:limit]


class CharText:
    """A text as character ids, for training a character-level language model.

    ``vocabulary`` is the text's sorted unique characters (a str; id ``i`` is
    ``vocabulary[i]``), so ``CharText(vocabulary)`` rebuilds the same encoder later, e.g. to
    generate with a saved network. ``ids["train"]`` and ``ids["validation"]`` hold the text's
    ids, the validation part being the last ``validation`` fraction of the text (default 10 %).
    Read a file with ``CharText(load_text(path))``.
    """

    def __init__(self, text: str, validation: float = 0.1):
        if not isinstance(text, str) or not text:
            raise InputError("CharText needs a non-empty str (read a file with load_text(path))")
        fraction("validation (the fraction of the text kept for validation)", validation)
        self.vocabulary = "".join(sorted(set(text)))
        self._index = {character: i for i, character in enumerate(self.vocabulary)}
        ids = self.encode(text)
        cut = len(text) - round(len(text) * validation)
        self.ids = {"train": ids[:cut], "validation": ids[cut:]}

    def __repr__(self):
        sizes = ", ".join(f"{split} {len(ids)}" for split, ids in self.ids.items())
        return f"CharText({len(self.vocabulary)} characters; {sizes})"

    def encode(self, text: str):
        """The ids of the characters of ``text`` (int64 array); InputError names characters
        outside the vocabulary."""
        if not isinstance(text, str):
            raise InputError(f"encode takes a str, got {type(text).__name__}")
        unknown = sorted(set(text) - self._index.keys())
        if unknown:
            shown = ", ".join(repr(character) for character in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise InputError(f"characters not in the vocabulary: {shown}{more}; the vocabulary "
                             f"holds {len(self.vocabulary)} characters")
        return host_array_view([self._index[character] for character in text], "int64")

    def decode(self, ids) -> str:
        """The text of a 1-D sequence of ids (list, NumPy or backend array)."""
        ids = to_numpy(ids)
        if ids.ndim != 1 or (ids.size and not namespace(ids).isdtype(ids.dtype, "integral")):
            raise InputError(f"decode takes a 1-D sequence of integer ids, got shape "
                             f"{tuple(ids.shape)} of {ids.dtype}")
        values = ids.tolist()
        bad = [i for i in values if not 0 <= i < len(self.vocabulary)]
        if bad:
            raise InputError(f"ids outside the vocabulary (0..{len(self.vocabulary) - 1}): "
                             f"{bad[:10]}")
        return "".join(self.vocabulary[i] for i in values)

    def _split(self, split, context):
        one_of("split", split, SPLITS)
        ids = self.ids[split]
        context = integer("context", context)
        if len(ids) < context + 1:
            raise DataError(f"the {split} part holds {len(ids)} characters; windows of context "
                            f"{context} need at least {context + 1}: give a longer text or a "
                            "smaller context")
        return ids, context

    @staticmethod
    def _windows(ids, starts, context):
        """(x, y): the windows of ``context`` ids at ``starts``, and the same shifted by one."""
        rows = ids[starts[:, None] + namespace(ids).arange(context + 1)]
        return rows[:, :-1], rows[:, 1:]

    def batch(self, batch_size: int, context: int, split: str = "train"):
        """``(x, y)``, each of shape (batch_size, context): windows at random positions of the
        split (from portanet's seeded generator), ``y`` being ``x`` shifted by one character."""
        batch_size = integer("batch_size", batch_size)
        ids, context = self._split(split, context)
        return self._windows(ids, rng().integers(0, len(ids) - context, size=batch_size),
                             context)

    def windows(self, context: int, split: str = "train", stride: int | None = None):
        """``(x, y)``: every window of the split starting at 0, ``stride``, 2 ``stride``, ...
        (default ``stride = context``: the split cut into consecutive windows), ``y`` being
        ``x`` shifted by one. A fixed set, e.g. for ``Network.fit`` or a validation loss."""
        ids, context = self._split(split, context)
        stride = context if stride is None else integer("stride", stride)
        return self._windows(ids, namespace(ids).arange(0, len(ids) - context, stride), context)


def sample_next(logits, temperature: float = 1.0, top_k: int | None = None):
    """Draw an id from ``logits`` over a vocabulary: shape (V,) gives an int, (N, V) an int64
    array of N ids (one per row). The probabilities are ``softmax(logits / temperature)``
    (computed stably, in float64 on the host), kept to the ``top_k`` largest when given; a small
    temperature tends to the most likely id. Draws come from portanet's seeded generator."""
    logits = to_numpy(logits)
    xp = namespace(logits)
    if logits.ndim not in (1, 2) or logits.shape[-1] == 0:
        raise ShapeError(f"logits must have shape (V,) or (N, V), got {tuple(logits.shape)}")
    positive("temperature", temperature)
    vocabulary = logits.shape[-1]
    if top_k is not None and integer("top_k", top_k) > vocabulary:
        raise InputError(f"top_k must be between 1 and the vocabulary size {vocabulary}, "
                         f"got {top_k}")
    z = xp.astype(logits, xp.float64) / temperature
    if not bool(xp.all(xp.isfinite(z))):
        raise InputError("logits hold NaN or infinite values (or overflow at this temperature)")
    if top_k is not None:  # rank 0 is the largest logit; ties keep the lower id
        rank = xp.argsort(xp.argsort(-z, axis=-1, stable=True), axis=-1, stable=True)
        z = xp.where(rank < top_k, z, -math.inf)
    weights = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    cdf = xp.cumulative_sum(weights, axis=-1)
    # u in (0, total]: the first id whose cumulative weight reaches u has a non-zero weight
    u = (1.0 - rng().random(tuple(cdf.shape[:-1]) + (1,))) * cdf[..., -1:]
    ids = xp.sum(xp.astype(cdf < u, xp.int64), axis=-1)
    return int(ids) if logits.ndim == 1 else ids


def generate(network, prompt_ids, steps: int, context: int, temperature: float = 1.0,
             top_k: int | None = None):
    """``prompt_ids`` followed by ``steps`` new ids (a 1-D int64 array), drawn one at a time.

    Each step gives ``network.predict`` a (1, context) integer array: the last ``context``
    ids, or while there are fewer, the ids followed by padding (id 0); the network answers
    (1, context, V) logits, and :func:`sample_next` draws the next id from those at the last
    real id's position with ``temperature`` and ``top_k``. The network must be causal (its
    output at a position depends only on the ids up to it), as a language model is: the
    padding then changes nothing, and every call has one shape (a compiled prediction, on JAX,
    is made once, not once per prompt length).
    """
    prompt = to_numpy(prompt_ids)
    if prompt.ndim != 1 or not prompt.size or not namespace(prompt).isdtype(prompt.dtype,
                                                                            "integral"):
        raise InputError(f"prompt_ids must be a non-empty 1-D sequence of integer ids, got "
                         f"shape {tuple(prompt.shape)} of {prompt.dtype}")
    integer("steps", steps, low=0)
    context = integer("context", context)
    ids = prompt.tolist()
    for _ in range(steps):
        last = ids[-context:]
        window = host_array_view([last + [0] * (context - len(last))], "int64")
        logits = to_numpy(network.predict(window))
        if logits.ndim != 3 or tuple(logits.shape[:2]) != tuple(window.shape):
            raise ShapeError(f"generate needs a network that maps (1, T) ids to (1, T, V) "
                             f"logits; for input {tuple(window.shape)} it gave "
                             f"{tuple(logits.shape)}")
        ids.append(sample_next(logits[0, len(last) - 1], temperature, top_k))
    return host_array_view(ids, "int64")
