"""Prototype: the demo LALM with another EVC prompt, retrained, and its DEVELOPMENT baseline (issue 11, WER).

``probe_copy_prompt.py`` showed that one worked exchange before the real turn makes the frozen thinker copy the
sentence (DEVELOPMENT WER 4.6 % -> 0.2 %). The talker reads the thinker's hidden states, so a prompt change needs
a retrained talker. This script patches ``DemoOmni.prompt_text`` to a variant of ``probe_copy_prompt.VARIANTS``,
retrains with ``scripts/train_demo_model.py`` (the committed audio encoder reused: it is trained on the SER prompt,
which does not change), and runs the unintervened baseline on DEVELOPMENT through esnlib's own path
(``X.baseline``), printing Table 2's columns; with ``--before-weights`` (an older model folder) and
``--before-variant`` also that model's baseline on the same sources, under its own prompt.

It was run on 02e7dc5, before the worked exchange landed (``--before-weights`` = that commit's
esnlib/assets/demo_lalm, ``--before-variant no_example``); its output equals what ``make demo-model`` now trains.

    python scripts/prototypes/retrain_one_shot.py --out /tmp/demo_one_shot --results /tmp/one_shot_results \
        --before-weights /tmp/old_demo_lalm --before-variant no_example
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "scripts" / "prototypes"))

import probe_copy_prompt as P  # noqa: E402
from esnlib.models import demo as D  # noqa: E402


def patch(variant: str) -> None:
    """Every DemoOmni builds its EVC prompts with ``variant`` (probe_copy_prompt.VARIANTS)."""
    spec = P.VARIANTS[variant]
    orig = D.DemoOmni.prompt_text

    def prompt_text(self, task, target=None, text=None, degree=""):
        if task != "evc":
            return orig(self, task, target, text, degree)
        return P.prompt(self, target, text, spec.get("system", D.SYSTEM_EVC), spec.get("example"))

    D.DemoOmni.prompt_text = prompt_text


def baseline(model_dir: str | None, results: str, n: int | None, split: str):
    from esnlib import experiments as X
    from esnlib.tables import baseline_table
    from esnlib.world import load_world

    adapter = D.DemoAdapter(D.load_demo_model(model_dir))
    w = load_world(corpus_root=str(ROOT / "data" / "demo_corpus"), results_dir=results, naturalness=None,
                   build_corpus=False, progress=True, batch_size=64, shard_size=16, adapter=adapter)
    return baseline_table(X.baseline(w, split, n=n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="one_shot")
    ap.add_argument("--out", required=True, help="folder for the retrained parts")
    ap.add_argument("--results", required=True, help="a fresh results folder for the baselines")
    ap.add_argument("--split", default="DEVELOPMENT")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--before-weights", default=None, help="an older model folder to compare with")
    ap.add_argument("--before-variant", default="no_example", help="the prompt variant the older model was trained on")
    a = ap.parse_args()
    import pandas as pd

    old = None
    if a.before_weights:
        patch(a.before_variant)
        old = baseline(a.before_weights, a.results + "/before", a.n, a.split)
    patch(a.variant)
    if not a.skip_train:
        import train_demo_model

        sys.argv = ["train_demo_model.py", "--out", a.out, "--encoder-from", str(D.ASSET_DIR)]
        train_demo_model.main()
    new = baseline(a.out, a.results + "/" + a.variant, a.n, a.split)
    with pd.option_context("display.width", 200):
        if old is not None:
            print(f"{a.before_weights}, {a.before_variant}\n", old.round(1).to_string(index=False))
        print(f"retrained, {a.variant}\n", new.round(1).to_string(index=False))


if __name__ == "__main__":
    main()
