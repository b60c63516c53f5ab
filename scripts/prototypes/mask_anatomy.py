"""Why CAS's masks barely steer the demo LALM (docs/demo_world.md, fifth round): the mean activation level and the
emotion contrast of CAS's and ATTR's neurons, |attribution| per |activation| (how strongly the talker reads a neuron),
firing probability P, and the rank correlation of ATTR's score with the activation contrast over all neurons.
Reads an existing store (identification statistics and ATTR units); notebook 09's mask_anatomy table is the short
form.

    .venv/bin/python scripts/prototypes/mask_anatomy.py <corpus root> <results dir> [r]
"""
import sys

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from esnlib import experiments as X  # noqa: E402

torch.set_num_threads(2)
CORPUS, RESULTS = sys.argv[1:3]
RATE = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
w = X.load_world(corpus_root=CORPUS, results_dir=RESULTS, build_corpus=False, progress=True)
cas = X.identify(w, "CAS", rate=RATE, cap=50)
att = X.identify(w, "ATTR", rate=RATE, cap=50)
acts, emos = X.success_activations(w, cap=50)
A = att.scores
print(X.mask_anatomy({"CAS": cas.masks, "ATTR": att.masks}, acts, emos, A).round(4).to_string())
for k, e in enumerate(emos):
    contrast = acts[k] - np.delete(acts, k, axis=0).mean(0)
    for name, ix in (("CAS", cas.masks[e]), ("ATTR", att.masks[e]), ("all", np.arange(acts.shape[1]))):
        print(f"{e:8s} {name:4s} mean |act| {np.abs(acts[k, ix]).mean():.4f}  "
              f"|attr|/|act| {np.abs(A[k, ix]).mean() / np.abs(acts[k, ix]).mean():.4f}  P {cas.P[k, ix].mean():.3f}")
    print(f"{e:8s} Spearman(ATTR score, contrast) over all neurons {spearmanr(A[k], contrast).statistic:+.3f}")
