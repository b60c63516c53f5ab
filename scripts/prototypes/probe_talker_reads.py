"""Ninth round (issue 11): does CAS steer a demo LALM whose talker reads the whole user turn?

The committed talker reads the thinker's last-layer states at the last prompt position and at the answer's tokens.
Qwen2.5-Omni's talker reads the thinker's states of the whole prompt too (the instruction that names the target
emotion included). ``train_demo_model.py --talker-reads turn`` trains such a talker (the committed audio encoder
reused); this script measures CAS on it on DEVELOPMENT through esnlib's own path (identify -> evaluate_settings ->
summarize), as ``probe_cas_kinds.py`` does for the committed model: r = X.DEMO_RATE, c = 50, 40 sources x 4 targets.

    .venv/bin/python scripts/prototypes/probe_talker_reads.py <model dir> <results dir> <out dir> [N] [settings]

settings: comma-separated ``kind:alpha`` for CAS (default steer:1,steer:2,steer:4,deactivate:0), each CAS steer
also with a random mask of the same size. The driver is ``probe_cas_kinds.dev_probe`` (the recorded JSON came from
this script before the driver was shared; the same steps).
"""
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "prototypes"))
from esnlib import experiments as X  # noqa: E402
from esnlib.models import demo as D  # noqa: E402
from probe_cas_kinds import dev_probe, parse_kinds  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(2)
    MODEL, RESULTS, OUT = sys.argv[1:4]
    N_DEV = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    SETTINGS = parse_kinds(sys.argv[5] if len(sys.argv) > 5 else "steer:1,steer:2,steer:4,deactivate:0")
    world = X.load_world(corpus_root=str(ROOT / "data" / "demo_corpus"), results_dir=RESULTS, batch_size=64,
                         progress=True, adapter=D.DemoAdapter(D.load_demo_model(MODEL)), build_corpus=False)
    res = dev_probe(world, SETTINGS, N_DEV, random_kinds=("steer",))
    Path(OUT).mkdir(parents=True, exist_ok=True)
    json.dump({"model": MODEL, **res}, open(f"{OUT}/talker_reads_dev.json", "w"), indent=1, default=str)
