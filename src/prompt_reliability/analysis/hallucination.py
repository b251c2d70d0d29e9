"""Object hallucination: POPE (yes/no object probes) and CHAIR (object mentions in captions).

Follows UnSAF Appendix G, which follows the benchmarks' own definitions:

- **POPE** (Li et al., 2023): each probe asks "Is there a <object> in the image?" about an object that
  is present (label 1) or absent (label 0). A reply is read as POPE's evaluation script reads it: only
  its first sentence (up to the first ``.``), commas dropped, split on spaces; it is *no* when one of
  the words is ``no`` / ``No`` / ``not``, else *yes*. With TP = present and yes, FP = absent and yes,
  FN = present and no, TN = absent and no: accuracy, precision = TP/(TP+FP), recall = TP/(TP+FN),
  F1 their harmonic mean, yes-ratio = share of yes replies. A ratio whose denominator is 0 is NaN.
- **CHAIR** (Rohrbach et al., 2018): the objects a caption mentions are found through a vocabulary
  (surface phrase -> canonical object; longest phrase first, whole words, case-insensitive, plurals
  with ``s``/``es``). ``CHAIR_i`` = hallucinated mentions / all mentions over the whole caption set
  (instances, as the reference implementation counts them: a phrase said twice counts twice);
  ``CHAIR_s`` = share of captions with at least one hallucinated mention.
- **CHAIR F1** (UnSAF eq. after 10): per caption, with G the set of mentioned objects and T the
  image's objects, P = |G∩T|/|G|, R = |G∩T|/|T|, F1 = 2PR/(P+R); a caption that mentions no object
  (or no true one) has F1 = 0. The table reports the mean over captions (the paper does not say how
  it aggregates; this is the adaptation, named in the README).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

POPE_METRICS = ("pope_accuracy", "pope_precision", "pope_recall", "pope_f1", "pope_yes_ratio")
CHAIR_METRICS = ("chair_i", "chair_s", "chair_f1")


# --- POPE ----------------------------------------------------------------------------------------


def pope_says_yes(reply: str | None) -> bool:
    """POPE's reading of a reply (module docstring): False when its first sentence says no/not."""
    text = reply or ""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return not ("No" in words or "not" in words or "no" in words)


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def pope_metrics(labels: Sequence[int] | np.ndarray, replies: Sequence[str | None]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and yes-ratio of ``replies`` to probes with ``labels`` (1 = present)."""
    truth = np.asarray(labels, dtype=bool)
    if truth.shape[0] != len(replies):
        raise ValueError(f"{truth.shape[0]} labels for {len(replies)} replies")
    yes = np.fromiter((pope_says_yes(r) for r in replies), dtype=bool, count=len(replies))
    tp, fp = int((yes & truth).sum()), int((yes & ~truth).sum())
    fn, tn = int((~yes & truth).sum()), int((~yes & ~truth).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if (precision + recall) > 0 else (
        0.0 if tp + fp and tp + fn else math.nan)
    return {"pope_accuracy": _ratio(tp + tn, truth.shape[0]), "pope_precision": precision, "pope_recall": recall,
            "pope_f1": f1, "pope_yes_ratio": _ratio(int(yes.sum()), truth.shape[0])}


# --- CHAIR ---------------------------------------------------------------------------------------


class ObjectVocabulary:
    """Surface phrases -> canonical objects; :meth:`mentions` finds them in a caption."""

    def __init__(self, synonyms: Mapping[str, Iterable[str]]):
        phrases: dict[str, str] = {}
        for canonical, words in synonyms.items():
            for phrase in {canonical, *words}:
                key = " ".join(phrase.lower().split())
                if phrases.setdefault(key, canonical) != canonical:
                    raise ValueError(f"object phrase {phrase!r} names both {phrases[key]!r} and {canonical!r}")
        self.objects = tuple(synonyms)
        self._canonical = phrases
        alternatives = sorted(phrases, key=lambda p: (-len(p), p))  # longest first: "red circle" before "circle"
        body = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in alternatives)
        self._pattern = re.compile(rf"\b({body})(?:es|s)?\b", re.IGNORECASE)

    @classmethod
    def from_objects(cls, objects: Iterable[str]) -> ObjectVocabulary:
        """Each object name is its own only phrase (plurals are matched anyway)."""
        return cls({name: () for name in sorted(set(objects))})

    def mentions(self, caption: str | None) -> list[str]:
        """Canonical objects mentioned, in caption order, one entry per mention."""
        return [self._canonical[" ".join(m.group(1).lower().split())] for m in self._pattern.finditer(caption or "")]


def chair_metrics(captions: Sequence[str | None], truths: Sequence[Iterable[str]],
                  vocabulary: ObjectVocabulary) -> dict[str, float]:
    """CHAIR_i, CHAIR_s and mean CHAIR F1 of ``captions`` against each image's objects ``truths``."""
    if len(captions) != len(truths):
        raise ValueError(f"{len(captions)} captions for {len(truths)} object sets")
    mentioned = hallucinated = captions_with_hallucination = 0
    f1s = []
    for caption, truth in zip(captions, truths):
        objects = set(truth)
        said = vocabulary.mentions(caption)
        wrong = sum(1 for o in said if o not in objects)
        mentioned += len(said)
        hallucinated += wrong
        captions_with_hallucination += wrong > 0
        hits = len(set(said) & objects)
        precision = hits / len(set(said)) if said else 0.0
        recall = hits / len(objects) if objects else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if hits else 0.0)
    n = len(captions)
    return {"chair_i": _ratio(hallucinated, mentioned), "chair_s": _ratio(captions_with_hallucination, n),
            "chair_f1": float(np.mean(f1s)) if n else math.nan}
