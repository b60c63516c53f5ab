"""Which prosody cues a mask moves: for the TEST self pairs in a results store (``data/results`` after ``make
paper``), steered minus baseline on the same (source, e_tgt), per cue of e_tgt's profile, as a fraction of the cue's
neutral -> e_tgt distance (docs/demo_world.md, ninth round). Reads the stored rows only; nothing is generated.

    .venv/bin/python scripts/prototypes/cas_cues.py data/results [selector:kind:alpha ...]

Default conditions: CAS:steer:1 CAS:deactivate:0 ATTR:steer:0.1 (r = 1 %, c = 50).
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from esnlib import tts  # noqa: E402
from esnlib.constants import TARGET_EMOTIONS  # noqa: E402

FIELDS = list(tts.FIELDS)
COLS = ["cue_" + f for f in FIELDS]


def load(store: Path) -> pd.DataFrame:
    """Every stored TEST EVC shard with its key's condition fields."""
    parts = []
    for key_file in sorted((store / "evc").glob("*.json")):
        key, shard = json.loads(key_file.read_text()), key_file.with_suffix(".parquet")
        if key.get("eval_split") != "TEST" or not shard.exists():
            continue
        df = pd.read_parquet(shard)
        for f in ("selector", "kind", "alpha", "rate", "cap", "mask_emotion"):
            df["k_" + f] = key.get(f)
        parts.append(df)
    d = pd.concat(parts, ignore_index=True)
    cues = pd.DataFrame([json.loads(p) if isinstance(p, str) else p for p in d["prosody"]])[FIELDS]
    cues.columns = COLS
    return pd.concat([d, cues], axis=1)


def cue_shift(d: pd.DataFrame, selector: str, kind: str, alpha: float, rate=0.01, cap=50) -> pd.DataFrame:
    base = d[d.k_kind == "none"].drop_duplicates(["utt_id", "target"]).set_index(["utt_id", "target"])
    s = d[(d.k_selector == selector) & (d.k_kind == kind) & (d.k_alpha == alpha) & (d.k_rate == rate)
          & (d.k_cap == cap) & (d.k_mask_emotion == d.target)]
    s = s.drop_duplicates(["utt_id", "target"]).set_index(["utt_id", "target"])
    b = base.loc[s.index]
    neutral = np.array([getattr(tts.PROFILES["neutral"], f) for f in FIELDS], float)
    out = []
    for e in TARGET_EMOTIONS:
        m = s.index.get_level_values(1) == e
        dist = np.array([getattr(tts.PROFILES[e], f) for f in FIELDS], float) - neutral
        shift = (s[COLS].values[m] - b[COLS].values[m]).mean(0)
        level = b[COLS].values[m].mean(0) - neutral
        for f, x, lv, z in zip(FIELDS, shift, level, dist):
            if z != 0:
                out.append({"condition": f"{selector} {kind} a={alpha:g}", "e_tgt": e, "n": int(m.sum()), "cue": f,
                            "shift": x / z, "baseline_level": lv / z})
    return pd.DataFrame(out)


if __name__ == "__main__":
    store = Path(sys.argv[1])
    conds = sys.argv[2:] or ["CAS:steer:1", "CAS:deactivate:0", "ATTR:steer:0.1"]
    d = load(store)
    tab = pd.concat([cue_shift(d, c.split(":")[0], c.split(":")[1], float(c.split(":")[2])) for c in conds])
    print(tab.pivot_table(index=["condition", "e_tgt", "n"], columns="cue", values="shift").round(3).to_string())
