# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Selector comparison (Table 3, Figure 3)
#
# ESNs identified on the IDENTIFICATION split (every neutral source converted to every target; success filter: the
# first judge says e_tgt and WER ≤ 0.15; cap c) with each selector (LAP, LAPE, MAD, CAS, random), then steered on
# TEST (seen + unseen speakers pooled) for every e_mask × e_tgt. Self effect = diagonal Δ emotion match (pp),
# cross effect = off-diagonal mean, gap = self − cross, each with a 95 % bootstrap CI over source utterances and
# McNemar's test on the self pairs. CAS and random (the headline pair) use `n_eval` sources on the diagonal and
# `n_cross` off it; LAP, LAPE and MAD use `n_sweep` sources per cell. Every heatmap writes a cell's n under its
# value and outlines the cells whose change is significant by the exact paired test (McNemar p < 0.05): a ±12.5 pp
# from n = 8 is one source of eight.
# On the demo LALM r defaults to `X.DEMO_RATE` and α to `X.DEMO_ALPHA` (printed above; docs/demo_world.md says why);
# its identification statistics count the whole generation, prompt included, as the paper's do
# (`DemoAdapter(evc_stat_positions="generated")` counts the answer's positions only).
# With `human_filter` (the CSV of a filter-mode listening test on the IDENTIFICATION outputs, notebook 10 /
# docs/listening_test.md) Table 3 gains the paper's CAS-H row: CAS on the human-filtered success sets.

# %% tags=["parameters"]
# Parameters (papermill overrides these; `smoke=True` shrinks every run for tests)
model = "demo"                  # esnlib.models.registry name or path
corpus_root = "data/demo_corpus"  # the corpus folder (the demo corpus is built here if missing)
corpus = None                   # "demo", "esd", "iemocap", "meld", "msp-podcast"; None: the folder's layout.
                                # EVC notebooks take demo/esd, notebook 08 (SER) all five (docs/notebooks.md)
corpus_n_utts = None            # sentences per speaker when the demo corpus is built here (None: mode default)
judges = "prosody,spectral"     # emotion judges (esnlib.judges.registry), the first one filters successes
naturalness = "dnsmos-p808"     # naturalness judge (UTMOS in the paper)
selector = "CAS"
r = None                        # selection rate; None: the paper's 0.5 % (X.PAPER_RATE), X.DEMO_RATE on the demo LALM
c = 50                          # success-set cap
max_wer = 0.15                  # success filter: WER threshold (the paper's tau_wer)
alpha = None                    # steering strength; None: the paper's 1.0, X.DEMO_ALPHA on the demo LALM
kind = "steer"
n_id = None                     # identification sources (neutral utterances); None: the whole split
n_eval = None                   # evaluation sources (pooled TEST-SEEN + TEST-UNSEEN); None: mode default
n_cross = None                  # sources for the off-diagonal (cross) cells of headline conditions; None: mode default
n_sweep = None                  # sources for the other conditions (sweeps, secondary selectors); None: mode default
device = "cpu"
seed = 0
smoke = False
batch_size = None
results_dir = "data/results"
stats_dir = None                # per-sample activation statistics; None: next to results_dir (esnlib.experiments.run_dirs)
figures_dir = "figures"
executor = "local"              # "local" or "ray": generation units run on a Ray cluster (esnlib.grid)
ray_address = None              # an existing Ray cluster ("ray://head:10001" or "auto"); None: start a local one
num_workers = None              # Ray actors (None: one per GPU, else one per CPU)
rowwise = True                  # a sweep's conditions share generate calls (one edit per batch row); False: one call each
human_filter = None             # CSV from a filter-mode listening test (esnlib.listening.save_filter_file): CAS-H rows

# %%
import pandas as pd
from IPython.display import Markdown, display

import esnlib.experiments as X
from esnlib import plots
from esnlib.notebook import setup

nb = setup("02_selectors", task="evc", params=globals())  # parameters checked, then the world loaded
world, J, cfg = nb.world, nb.judges, nb.cfg
r, alpha, n_id, n_eval, n_cross, n_sweep = cfg.r, cfg.alpha, cfg.n_id, cfg.n_eval, cfg.n_cross, cfg.n_sweep
save, table, rows_csv, listen = nb.save, nb.table, nb.rows_csv, nb.listen

# %%
selectors = list(X.SELECTORS)
base = X.baseline(world, X.TEST, n=n_eval)
masksets = {s: X.identify(world, s, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer) for s in selectors}
ms = masksets[selectors[0]]
display(Markdown(f"Success sets (judge {ms.filter_judge}): before cap {ms.n_success_all}, after cap c={c}: "
                 f"{ms.n_success}. Mask sizes: " + "; ".join(f"{s}: {m.sizes()}" for s, m in masksets.items())))
# a secondary selector can leave an emotion without neurons on little data (LAPE keeps only neurons above the 95th
# percentile of P, and short answers put many P at 1): it is left out of Table 3 with a note, never steered empty
empty = {s: [e for e, v in masksets[s].masks.items() if len(v) == 0] for s in ("LAP", "LAPE", "MAD")}
for s, es in empty.items():
    if es:
        del masksets[s]
        display(Markdown(f"**{s} left out of Table 3**: its mask of {', '.join(es)} is empty at r = {r:.3%}, c = {c} "
                         "(raise r or c, or the identification pool)."))
if human_filter is None:
    display(Markdown("No `human_filter` given: Table 3 has no CAS-H row (CAS from human-filtered success "
                     "sets needs a filter-mode listening test on the IDENTIFICATION outputs; "
                     "docs/listening_test.md)."))
else:
    from esnlib import listening as L

    hf = L.read_filter_file(human_filter)
    CAS_H = "CAS-H (SIMULATED raters)" if hf["simulated"].any() else "CAS-H"
    masksets[CAS_H] = X.identify(world, "CAS", rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer, human=hf)
    display(Markdown(f"{CAS_H}: {int(hf.human_success.sum())} of {len(hf)} rated clips are human successes; "
                     f"success sets before cap {masksets[CAS_H].n_success_all}, after cap "
                     f"{masksets[CAS_H].n_success}."))

# %%
# the headline pair with full power, the other selectors on fewer sources; each call is one pass whose
# conditions share generate calls (row-wise edits)
head = [s for s in masksets if s in ("CAS", "random") or s.startswith("CAS-H")]
rest = [s for s in selectors if s not in head and s in masksets]
rows = dict(zip(head, X.evaluate_settings(world, [(masksets[s], "steer", alpha) for s in head], n=n_eval,
                                          n_cross=n_cross)))
if rest:
    rows.update(zip(rest, X.evaluate_settings(world, [(masksets[s], "steer", alpha) for s in rest],
                                              n=n_sweep)))
summ = [X.summarize(rows[s], base, selector=s) for s in masksets]
heat = {s: X.effect_tables(rows[s], base)[J[0]] for s in masksets}
t3 = table(pd.concat(summ, ignore_index=True), "table3")
rows_csv(base, *rows.values())
t3

# %%
save(plots.selector_summary(t3, title=f"Selectors (c={c}, r={r:.3%}, steer α={alpha})"), "summary")
save(plots.effect_heatmaps(heat, title=f"Δ emotion match (pp), judge {J[0]}"), "heatmaps")
per = pd.concat([X.effect_ci(rows[s], base, j).assign(selector=s, judge=j) for s in head for j in J],
                ignore_index=True)
table(per, "per_emotion")
per

# %%
g = t3.set_index(["selector", "judge"])
lines = []
for j in J:
    cas, rnd = g.loc[("CAS", j)], g.loc[("random", j)]
    lines.append(f"- **{j}**: CAS self {cas['self']:+.1f} pp [{cas.self_lo:+.1f}, {cas.self_hi:+.1f}] "
                 f"(n = {int(cas.n_pairs)} pairs, McNemar p = {cas.mcnemar_p:.2g}), cross {cas.cross:+.1f} pp "
                 f"[{cas.cross_lo:+.1f}, {cas.cross_hi:+.1f}], gap {cas.gap:+.1f} pp; on text-preserving pairs "
                 f"(WER ≤ {max_wer}) self {cas.self_textok:+.1f} pp [{cas.self_textok_lo:+.1f}, "
                 f"{cas.self_textok_hi:+.1f}] (n = {int(cas.n_textok)}); Δ posterior of e_tgt {cas.d_post:+.1f} pp. "
                 f"Random (same size): self {rnd['self']:+.1f} pp [{rnd.self_lo:+.1f}, {rnd.self_hi:+.1f}].")
for s in [s for s in masksets if s.startswith("CAS-H")]:
    h = g.loc[(s, J[0])]
    lines.append(f"- **{s}** ({J[0]}): self {h['self']:+.1f} pp [{h.self_lo:+.1f}, {h.self_hi:+.1f}] "
                 f"(n = {int(h.n_pairs)} pairs), cross {h.cross:+.1f} pp, gap {h.gap:+.1f} pp, ΔWER "
                 f"{100 * h.d_wer:+.1f} pp (paper: CAS-H slightly below CAS in self effect, much lower ΔWER).")
display(Markdown("\n".join(lines) + f"\n\nΔWER per selector (pp): " + ", ".join(
    f"{s} {100 * g.loc[(s, J[0]), 'd_wer']:+.1f}" for s in masksets)
    + ". The paper finds CAS and MAD strongest and LAPE diffuse on Qwen2.5-Omni-7B (CAS +4.27 pp self at "
    "α = 1 with ΔWER +10.65 pp)."))
listen(base, rows["CAS"] if "CAS" in rows else next(iter(rows.values())))
