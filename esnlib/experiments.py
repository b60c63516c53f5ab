"""The steps the notebooks call, under one name: ``import esnlib.experiments as X``.

No logic lives only in a notebook, and none lives here either: this module re-exports the steps from the module
of each idea of the papers (docs/architecture.md draws the data path):

- :mod:`esnlib.world`: the World (model adapter, corpus with its Table 1 split, judges, stores), load_world,
  corpus loading, run_dirs, fingerprints, the paper's defaults (r, c, α) and the notebooks' run sizes (defaults).
- :mod:`esnlib.runs`: the generation drivers (EVC and SER conditions, baseline, ser_baseline): one store unit per
  (condition, shard), row-wise batching of conditions, generation de-duplication, the Ray path.
- :mod:`esnlib.identification`: stages 1-3 (identify, identify_ser, success_frame, MaskSet, mask_similarity,
  success_activations).
- :mod:`esnlib.sweeps`: masks intervened at test time (evaluate_settings, evaluate_masks, ser_effects,
  ser_label_free, ser_transfer).
- :mod:`esnlib.tables`: the papers' tables from stored rows (baseline_table, summarize, effect tables and CIs, SER
  tables, export_rows, export_ser_rows, save_table, audio_pairs).
- :mod:`esnlib.validity`: selector validity on the demo LALM (causal_effects, selector_validity, emotion_score,
  mask_anatomy, contrast_masks).
"""
from __future__ import annotations

from .constants import EMOTIONS, PAPER_NAMES, POOLED_SPLITS, SPLITS, TARGET_EMOTIONS, TEST  # noqa: F401
from .corpora.base import CorpusError, Utterance  # noqa: F401
from .evaluation import MIN_NATURALNESS_N, naturalness_note  # noqa: F401  (tables mark naturalness from few clips)
from .identification import (  # noqa: F401
    MaskSet, identification_clips, identify, identify_ser, mask_similarity, success_activations, success_frame,
)
from .runs import (  # noqa: F401
    _judge_rows, baseline, run_evc, run_evc_conditions, run_ser, run_ser_conditions, ser_baseline,
)
from .selection import selector_scores  # noqa: F401  (notebook 09 ranks with it; X.selector_scores)
from .sweeps import evaluate_masks, evaluate_settings, ser_effects, ser_label_free, ser_transfer  # noqa: F401
from .tables import (  # noqa: F401
    audio_pairs, baseline_table, cell_table, effect_ci, effect_pairs, effect_tables, export_rows, export_ser_rows,
    judge_names, label_distribution, save_table, ser_effect_ci, ser_effect_table, ser_self_other, summarize,
)
from .validity import (  # noqa: F401
    _precision_with_ties, candidate_neurons, causal_effects, contrast_masks, emotion_score, mask_anatomy,
    selector_validity,
)
from .world import (  # noqa: F401
    ALPHAS, CAPS, CORPUS_KINDS, DEFAULT_CORPUS_ROOT, DEMO_ALPHA, DEMO_ALPHAS, DEMO_CORPUS_NAMES, DEMO_RATE, DEMO_RATES,
    KIND_ALPHAS, MAX_WER, PAPER_ALPHA, PAPER_CAP, PAPER_RATE, PAPER_RATES, RATE_SCALE, SELECTORS, World,
    _load_judge, _load_model, _worker_world, corpus_fingerprint, corpus_kind, defaults, fingerprint, load_corpus,
    load_world, mask_fingerprint, run_dirs, second_demo_world, with_corpus,
)
