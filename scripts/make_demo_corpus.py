"""Build the demo corpus (espeak-ng speech in ESD's layout) into data/demo_corpus/.

    python scripts/make_demo_corpus.py                      # 10 speakers x 5 emotions x 60 sentences = 3,000 wavs
    python scripts/make_demo_corpus.py --n-utts 350 --workers 2 --out data/demo_corpus_full

Re-running resumes: existing readable wavs are kept, missing or corrupt ones are rendered.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from esnlib.corpora.synthetic import DEFAULT_N_UTTS, build_demo_corpus

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "data" / "demo_corpus"))
    ap.add_argument("--n-utts", type=int, default=DEFAULT_N_UTTS, help="parallel sentences per speaker and emotion")
    ap.add_argument("--speakers", nargs="*", default=None, help="speaker ids (default: all ten, 0011-0020)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    m = build_demo_corpus(args.out, n_utts=args.n_utts, speakers=args.speakers, seed=args.seed, workers=args.workers)
    print(f"demo corpus at {args.out}: {m['n_files']} files ({m['rendered']} rendered) in "
          f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
