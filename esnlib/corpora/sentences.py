"""The demo world's language: a small template grammar, its word vocabulary, disjoint sentence pools, and voice roles.

ESD's 350 parallel sentences per speaker are replaced by sentences of a restricted vocabulary, so a small model can
read content from audio on a CPU budget. Three disjoint pools keep the demo world honest:
``"corpus"`` (the ESD-layout demo corpus the pipeline studies), ``"pretrain"`` (what the demo LALM is trained on)
and ``"judge"`` (what the held-out SER judges are trained on). Voices are split the same way.
"""
from __future__ import annotations

import hashlib


import numpy as np

DETERMINERS = ("the", "a", "my", "your", "our", "this")
ADJECTIVES = ("red", "small", "old", "green", "quiet", "bright", "heavy", "warm", "cold", "new", "long", "dark")
NOUNS = (
    "dog", "car", "house", "garden", "river", "letter", "window", "teacher", "doctor", "city",
    "book", "train", "kitchen", "bird", "friend", "table", "door", "market", "phone", "boat",
)
VERBS = (
    "found", "moved", "opened", "painted", "carried", "watched", "cleaned", "followed", "visited", "called",
    "closed", "sold",
)
ADVERBS = ("today", "again", "slowly", "early", "later", "quickly", "tonight", "yesterday")

VOCAB: tuple[str, ...] = tuple(sorted(set(DETERMINERS + ADJECTIVES + NOUNS + VERBS + ADVERBS)))

POOLS = ("corpus", "pretrain", "judge")

#: espeak-ng voices by role; no voice serves two roles. Corpus speakers get ESD-style ids 0011-0020.
CORPUS_VOICES: dict[str, str] = {
    "0011": "en-us+m1",
    "0012": "en-us+f2",
    "0013": "en-gb+m3",
    "0014": "en-gb+f1",
    "0015": "en-gb-scotland+m4",
    "0016": "en-029+f3",
    "0017": "en-us-nyc+m2",
    "0018": "en-gb-x-rp+f4",
    "0019": "en-gb-x-gbclan+m5",
    "0020": "en-us+f5",
}
PRETRAIN_VOICES: tuple[str, ...] = (
    "en-us+m3", "en-gb+f3", "en-gb-scotland+f2", "en-029+m1", "en-us-nyc+f1", "en-gb-x-rp+m2",
    "en-gb-x-gbclan+f4", "en-us+m6",
)
JUDGE_VOICES: tuple[str, ...] = (
    "en-gb+m7", "en-us+f4", "en-gb-x-rp+m6", "en-029+f5", "en-gb-scotland+m1", "en-us-nyc+f3",
)




def _pool_of(sentence: str) -> str:
    h = int(hashlib.sha1(sentence.encode()).hexdigest()[:8], 16) % 10
    return "corpus" if h < 3 else ("pretrain" if h < 7 else "judge")


def make_sentences(n: int, pool: str = "corpus", seed: int = 0) -> list[str]:
    """``n`` distinct sentences of one pool, deterministic for (pool, seed). Pools never share a sentence."""
    if pool not in POOLS:
        raise ValueError(f"unknown sentence pool {pool!r}; expected one of {POOLS}")
    if n < 1:
        raise ValueError("n must be >= 1")
    rng = np.random.default_rng(seed)
    picked: list[str] = []
    seen: set[str] = set()
    # Sampling the grammar directly (not enumerating ~2M sentences) keeps this instant.
    while len(picked) < n:
        s = " ".join(
            (
                str(rng.choice(DETERMINERS[:3])),
                str(rng.choice(ADJECTIVES)),
                str(rng.choice(NOUNS)),
                str(rng.choice(VERBS)),
                str(rng.choice(DETERMINERS[3:])),
                str(rng.choice(NOUNS)),
                str(rng.choice(ADVERBS)),
            )
        )
        if s.split()[2] == s.split()[5] or s in seen or _pool_of(s) != pool:
            continue
        seen.add(s)
        picked.append(s)
    return picked
