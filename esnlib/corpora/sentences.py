"""The demo world's language: short English sentences about everyday events, disjoint pools, and voice roles.

Each sentence is an *event* (a clause whose meaning fits one emotion more than others — a stolen bike, a won cup, a
dead dog, a whale in the harbour, a bus time table) plus a time phrase. The event's emotional *congruence* with each
target emotion is data, written down here once: the primary emotion of the event gets the event's strength (0.5-1.0),
other emotions a fixed share of it (:data:`SECONDARY`), and neutral events a flat low value. The demo LALM's training
data renders an EVC target more fully the better the sentence fits it (``scripts/train_demo_model.py``); the model
must compute that from the words, through its pretrained thinker.

Three pools keep the demo world honest: ``"corpus"`` (the ESD-layout demo corpus the pipeline studies) uses events
that nothing else uses; ``"pretrain"`` (what the demo LALM is trained on) and ``"judge"`` (the held-out SER judges)
share the other events but never a sentence (disjoint time phrases). Voices are split the same way.
"""
from __future__ import annotations

import numpy as np

from ..constants import EMOTIONS

#: (event clause, primary emotion, strength); every clause is in the past tense and takes a time phrase after it
EVENTS: tuple[tuple[str, str, float], ...] = (
    # angry
    ("someone scratched my new car on purpose", "angry", 1.0),
    ("the landlord kept our whole deposit", "angry", 0.9),
    ("my brother broke my phone and lied about it", "angry", 1.0),
    ("the shop charged me twice for nothing", "angry", 0.8),
    ("somebody stole my bike from the porch", "angry", 0.9),
    ("a driver cut in front of us and shouted", "angry", 0.9),
    ("they cancelled my flight without a reason", "angry", 0.8),
    ("my roommate ate all my food", "angry", 0.6),
    ("the neighbours played loud music until dawn", "angry", 0.7),
    ("the mechanic lied about the repair bill", "angry", 0.9),
    ("my boss took the credit for my work", "angry", 1.0),
    ("someone kicked my dog in the street", "angry", 1.0),
    ("the company ignored all my complaints", "angry", 0.7),
    ("a stranger pushed me off the bus", "angry", 0.9),
    ("they towed my car for no reason", "angry", 0.8),
    ("the referee cheated us out of the game", "angry", 0.8),
    ("my coworker read my private letters", "angry", 0.8),
    ("the plumber left a mess and overcharged us", "angry", 0.6),
    ("the council cut down our old tree", "angry", 0.5),
    ("he slammed the door in my face", "angry", 0.9),
    # happy
    ("we won the championship", "happy", 1.0),
    ("my sister had a healthy baby girl", "happy", 1.0),
    ("I passed my driving test", "happy", 0.8),
    ("our team finally won the cup", "happy", 0.9),
    ("my best friend got engaged", "happy", 0.9),
    ("I got the job I always wanted", "happy", 1.0),
    ("we found the perfect house", "happy", 0.8),
    ("my grandmother turned one hundred", "happy", 0.7),
    ("the whole family came home for dinner", "happy", 0.7),
    ("my paintings sold at the fair", "happy", 0.8),
    ("we danced all night at the wedding", "happy", 0.8),
    ("my son scored his first goal", "happy", 0.9),
    ("the doctor said I was completely healthy", "happy", 0.9),
    ("our garden bloomed with flowers", "happy", 0.5),
    ("I finished my first marathon", "happy", 0.9),
    ("my parents gave me a puppy", "happy", 0.9),
    ("we celebrated our anniversary by the sea", "happy", 0.8),
    ("the whole class passed the exam", "happy", 0.8),
    ("my old friend came to visit", "happy", 0.6),
    ("I got a big raise at work", "happy", 0.8),
    # sad
    ("our old dog died", "sad", 1.0),
    ("my grandfather passed away", "sad", 1.0),
    ("I lost my mother's ring", "sad", 0.8),
    ("nobody came to my birthday party", "sad", 0.9),
    ("my best friend moved far away", "sad", 0.8),
    ("we had to sell the family home", "sad", 0.8),
    ("the little bird in our garden died", "sad", 0.7),
    ("she cried alone in her room", "sad", 0.9),
    ("my marriage ended", "sad", 1.0),
    ("our team lost every single game", "sad", 0.5),
    ("I failed the final exam", "sad", 0.7),
    ("the old theatre closed for good", "sad", 0.5),
    ("my cat went missing", "sad", 0.8),
    ("the hospital called with bad news", "sad", 0.9),
    ("I spent the holidays all alone", "sad", 0.9),
    ("my father forgot my name", "sad", 1.0),
    ("the rain ruined our last day together", "sad", 0.6),
    ("my grandmother fell very ill", "sad", 0.9),
    ("we said goodbye at the station", "sad", 0.7),
    ("my little brother lost his only friend", "sad", 0.8),
    # surprise
    ("a stranger left a gift at my door", "surprise", 0.9),
    ("my long lost cousin called me", "surprise", 0.9),
    ("it snowed in the middle of summer", "surprise", 1.0),
    ("the quiet neighbour turned out to be a famous singer", "surprise", 1.0),
    ("a whale swam into the harbour", "surprise", 0.9),
    ("my teacher showed up at my door", "surprise", 0.8),
    ("the old clock started ticking on its own", "surprise", 0.9),
    ("we found a hidden room behind the wall", "surprise", 1.0),
    ("my brother secretly learned to fly a plane", "surprise", 0.8),
    ("the shop suddenly gave everything away", "surprise", 0.8),
    ("a parrot said my name", "surprise", 0.9),
    ("the train arrived two hours early", "surprise", 0.6),
    ("my grandmother started a rock band", "surprise", 0.9),
    ("a horse walked into our kitchen", "surprise", 1.0),
    ("the twins were born on different days", "surprise", 0.6),
    ("a letter from the queen arrived", "surprise", 0.9),
    ("the lights came on by themselves", "surprise", 0.8),
    ("my shy son won a singing contest", "surprise", 0.6),
    ("we bumped into our old teacher in paris", "surprise", 0.7),
    ("a fish fell from the sky", "surprise", 1.0),
    # neutral
    ("the bus left at nine", "neutral", 0.0),
    ("we moved the table to the kitchen", "neutral", 0.0),
    ("I bought some bread and milk", "neutral", 0.0),
    ("the meeting was moved to thursday", "neutral", 0.0),
    ("my brother painted the fence grey", "neutral", 0.0),
    ("the train stopped at every station", "neutral", 0.0),
    ("we sorted the papers into boxes", "neutral", 0.0),
    ("she put the keys on the shelf", "neutral", 0.0),
    ("the shop opened at eight", "neutral", 0.0),
    ("I walked to the post office", "neutral", 0.0),
    ("they parked the car behind the house", "neutral", 0.0),
    ("the report had four pages", "neutral", 0.0),
    ("we checked the water meter", "neutral", 0.0),
    ("my neighbour washed his windows", "neutral", 0.0),
    ("the library moved to the second floor", "neutral", 0.0),
    ("I charged my phone", "neutral", 0.0),
    ("the printer ran out of paper", "neutral", 0.0),
    ("we ordered two chairs for the office", "neutral", 0.0),
    ("he read the newspaper on the train", "neutral", 0.0),
    ("the teacher handed out the forms", "neutral", 0.0),
)

#: share of an event's strength that carries over to a non-primary emotion (e.g. an outrage is partly sad)
SECONDARY: dict[str, dict[str, float]] = {
    "angry": {"happy": 0.0, "sad": 0.35, "surprise": 0.25},
    "happy": {"angry": 0.0, "sad": 0.05, "surprise": 0.4},
    "sad": {"angry": 0.3, "happy": 0.0, "surprise": 0.1},
    "surprise": {"angry": 0.15, "happy": 0.35, "sad": 0.1},
}
#: congruence of a neutral event with any emotion
NEUTRAL_CONGRUENCE = 0.15

#: time phrases; the pretrain and judge pools use disjoint ones, so they never share a sentence
TIMES: dict[str, tuple[str, ...]] = {
    "corpus": ("today", "last night", "this morning", "yesterday", "last week", "on monday"),
    "pretrain": ("today", "last night", "this morning", "yesterday", "last week", "on monday"),
    "judge": ("this year", "on friday", "in june"),
}
POOLS = ("corpus", "pretrain", "judge")


def _event_pool(i: int) -> str:
    # Two of every five events (per emotion, in order) belong to the corpus; the rest to pretrain/judge.
    return "corpus" if (i % 20) % 5 in (1, 3) else "pretrain"


def events(pool: str) -> list[tuple[str, str, float]]:
    """The events a pool draws from (corpus events are never used by the pretrain or judge pools)."""
    if pool not in POOLS:
        raise ValueError(f"unknown sentence pool {pool!r}; expected one of {POOLS}")
    want = "corpus" if pool == "corpus" else "pretrain"
    return [ev for i, ev in enumerate(EVENTS) if _event_pool(i) == want]


_BY_CLAUSE = {ev[0].lower(): ev for ev in EVENTS}


def _sentence(clause: str, time: str) -> str:
    s = f"{clause} {time}"
    return s[0].upper() + s[1:] + "."


def event_of(sentence: str) -> tuple[str, str, float] | None:
    """The (clause, primary emotion, strength) a demo sentence was built from, or None for other text."""
    s = sentence.strip().rstrip(".").lower()
    for t in {t for times in TIMES.values() for t in times}:
        if s.endswith(" " + t) and s[: -len(t) - 1] in _BY_CLAUSE:
            return _BY_CLAUSE[s[: -len(t) - 1]]
    return None


def congruence(sentence: str) -> dict[str, float]:
    """How well a demo sentence's meaning fits each emotion, 0..1 (neutral always 0). Data, not a model output."""
    ev = event_of(sentence)
    if ev is None:
        raise ValueError(f"{sentence!r} is not a demo-world sentence (esnlib.corpora.sentences)")
    _, primary, strength = ev
    out = {"neutral": 0.0}
    for e in EMOTIONS[1:]:
        if primary == "neutral":
            out[e] = NEUTRAL_CONGRUENCE
        elif e == primary:
            out[e] = strength
        else:
            out[e] = strength * SECONDARY[primary][e]
    return out


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


def make_sentences(n: int, pool: str = "corpus", seed: int = 0) -> list[str]:
    """``n`` distinct sentences of one pool, deterministic for (pool, seed), balanced over the events' primary
    emotions (round robin over a seeded shuffle). Pools never share a sentence."""
    if n < 1:
        raise ValueError("n must be >= 1")
    evs = events(pool)
    times = TIMES[pool]
    cap = len(evs) * len(times)
    if n > cap:
        raise ValueError(f"the {pool!r} pool has {cap} sentences ({len(evs)} events x {len(times)} time phrases); "
                         f"asked for {n}")
    rng = np.random.default_rng(seed)
    by_emo = {e: [ev for ev in evs if ev[1] == e] for e in EMOTIONS}
    # every (event, time) of each emotion in a seeded order; emotions interleaved so any prefix is balanced
    queues = {}
    for e, lst in by_emo.items():
        combos = [(ev[0], t) for t in times for ev in lst]
        order = rng.permutation(len(combos))
        queues[e] = [combos[i] for i in order]
    out: list[str] = []
    k = 0
    while len(out) < n:
        for e in EMOTIONS:
            if k < len(queues[e]) and len(out) < n:
                out.append(_sentence(*queues[e][k]))
        k += 1
    return out
