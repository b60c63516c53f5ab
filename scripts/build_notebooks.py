"""Write notebooks/01-09 (the sources, saved without outputs) from the cell texts below.

The .ipynb files are the sources that the runner executes; this script only keeps their shared set-up cells
consistent. Run: ``python scripts/build_notebooks.py`` (overwrites notebooks/0[1-9]_*.ipynb).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

PARAMS = '''\
# Parameters (papermill overrides these; `smoke=True` shrinks every run for tests)
model = "demo"                  # esnlib.models.registry name or path
corpus_root = "data/demo_corpus"  # the corpus folder (the demo corpus is built here if missing)
corpus = None                   # "demo", "esd", "iemocap", "meld", "msp-podcast"; None: the folder's layout.
                                # EVC notebooks take demo/esd, notebook 08 (SER) all five (docs/notebooks.md)
corpus_n_utts = None            # sentences per speaker when the demo corpus is built here (None: mode default)
judges = "prosody,spectral"     # emotion judges (esnlib.judges.registry), the first one filters successes
naturalness = "dnsmos"          # naturalness judge (UTMOS in the paper)
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
'''

SETUP = '''\
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import Audio, Markdown, display

import esnlib
import esnlib.experiments as X
from esnlib import plots
from esnlib.evaluation import self_cross
from esnlib.params import validate_params

validate_params(globals())  # every parameter above; a bad one is a ParameterError before anything is loaded
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
S = X.defaults(smoke)
demo = model in ("demo", "demo-lalm")
r = (X.DEMO_RATE if demo else X.PAPER_RATE) if r is None else r
alpha = (X.DEMO_ALPHA if demo else X.PAPER_ALPHA) if alpha is None else alpha
n_eval = S["n_eval"] if n_eval is None else n_eval
n_cross = S["n_cross"] if n_cross is None else n_cross
n_sweep = S["n_sweep"] if n_sweep is None else n_sweep
n_id = S["n_id"] if n_id is None else n_id
world = X.load_world(model=model, corpus_root=corpus_root, judges=judges, naturalness=naturalness,
                     results_dir=results_dir, stats_dir=stats_dir, device=device, seed=seed,
                     batch_size=batch_size or S["batch_size"], shard_size=S["shard_size"],
                     naturalness_per_shard=S["naturalness_per_shard"], n_utts=corpus_n_utts or S["corpus_n_utts"],
                     executor=executor, ray_address=ray_address, num_workers=num_workers, rowwise=rowwise,
                     corpus=corpus, task=TASK)
J = list(world.judges)
N_LM = sum(s.width for s in world.sites("lm"))


def save(fig, name):
    """Save a figure as figures/<notebook>_<name>.{pdf,png}."""
    plots.save(fig, f"{NB}_{name}", figures_dir)
    display(fig)
    import matplotlib.pyplot as plt
    plt.close(fig)


def table(df, name, latex=True):
    X.save_table(df, f"{NB}_{name}", figures_dir, latex=latex)
    return df


def rows_csv(*frames):
    """The per-sample rows behind this notebook's tables: figures/tables/<notebook>_rows.csv."""
    return X.export_rows(frames, f"{NB}_rows", figures_dir)


def listen(base_rows, rows, k=2):
    """Inline audio: baseline vs intervened for a few samples."""
    for _, p in X.audio_pairs(base_rows, rows, k=k).iterrows():
        display(Markdown(f"**{p.sample_id}** (e_tgt = {p.target}, e_mask = {p.mask_emotion}) — "
                         f"baseline: *{p.hyp_base}* / intervened: *{p.hyp}*"))
        display(Audio(filename=p.audio_path_base), Audio(filename=p.audio_path))


print(f"model {world.adapter.describe()} | corpus {world.corpus} ({world.corpus_kind}, {len(world.utts)} utterances) | "
      f"judges {J} | "
      f"N(lm) = {N_LM} | r = {r:.4f} -> {int(np.floor(r * N_LM))} neurons per emotion | c = {c} | alpha = {alpha} | "
      f"evaluation: {n_eval} sources (cross cells {n_cross}), sweeps {n_sweep}")
'''


#: parameters only some notebooks have (appended to their parameters cell)
HUMAN_FILTER = ("human_filter = None             # CSV from a filter-mode listening test "
                "(esnlib.listening.save_filter_file): CAS-H rows\n")
EXTRA_PARAMS = {
    "02_selectors": HUMAN_FILTER,
    "06_localization": HUMAN_FILTER,
    "08_recognition": ("transfer_corpus_root = None     # corpus B of the cross-corpus transfer; None: the second demo "
                       "corpus (demo world)\n"
                       "transfer_corpus = None          # its kind (demo, esd, iemocap, meld, msp-podcast); None: its "
                       "layout\n"),
}
#: notebooks on the SER task (any corpus); the others are EVC notebooks (ESD-like corpora only)
SER_NOTEBOOKS = ("08_recognition",)


def nb(name: str, title: str, intro: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    params = new_code_cell(PARAMS + EXTRA_PARAMS.get(name, ""))
    params.metadata["tags"] = ["parameters"]
    task = "ser" if name in SER_NOTEBOOKS else "evc"
    out = [new_markdown_cell(f"# {title}\n\n{textwrap.dedent(intro).strip()}"), params,
           new_code_cell(f'NB = "{name}"\nTASK = "{task}"  # the corpora it takes: esnlib.corpora.registry\n'
                         + SETUP)]
    for kind, src in cells:
        src = textwrap.dedent(src).strip()
        out.append(new_markdown_cell(src) if kind == "md" else new_code_cell(src))
    book = new_notebook(cells=out)
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.metadata["language_info"] = {"name": "python"}
    return book


NOTEBOOKS: dict[str, tuple[str, str, list]] = {}


def register(name, title, intro, cells):
    NOTEBOOKS[name] = (title, intro, cells)


# ----------------------------------------------------------------------------------------------------------- 01
register("01_baseline", "01 · Baseline EVC (Table 2)", """
    The unintervened model converts neutral TEST utterances (TEST-SEEN and TEST-UNSEEN pooled, as the paper reports
    every result) to each target emotion. We report the paper's three axes: target-emotion match per judge, WER of
    the decoded text against the reference transcript, and naturalness (DNSMOS OVRL in the demo world, every sample;
    UTMOS in the paper), plus the distribution of predicted labels (the paper's neutral bias) and, next to the match
    rate, a continuous measure: the judge's mean posterior of e_tgt.
""", [
    ("code", """
        base = X.baseline(world, X.TEST, n=n_eval)
        t2 = table(X.baseline_table(base), "table2")
        rows_csv(base)
        t2
    """),
    ("code", """
        long = pd.concat([base.assign(judge=j, match=base[f"match_{j}"]) for j in J], ignore_index=True)
        save(plots.emotion_match_bars(long, title=f"Baseline emotion match (TEST, {n_eval} sources per e_tgt)"),
             "emotion_match")
        dist = pd.concat([base.assign(judge=j, pred=base[f"pred_{j}"]) for j in J], ignore_index=True)
        save(plots.label_distribution(dist, title="Predicted labels of the baseline"), "label_distribution")
        ld = table(X.label_distribution(base), "label_distribution", latex=False)
    """),
    ("md", """
        **What the figures show.** Bars: share of conversions that each judge labels with the instructed emotion
        (95 % CIs). Second figure: which labels the judges actually predict. The paper's Qwen2.5-Omni-7B predicts
        *neutral* 57.2 % of the time (emotion2vec); the cell below reads the same numbers from this run.
    """),
    ("code", """
        avg = t2.set_index("e_tgt").loc["avg"]
        wrong = {j: base[(base[f"pred_{j}"] != base.target) & base[f"pred_{j}"].notna()][f"pred_{j}"]
                 .value_counts(normalize=True).mul(100) for j in J}
        best = t2[t2.e_tgt != "avg"].set_index("e_tgt")[f"match_{J[0]} (%)"]
        display(Markdown(
            f"Average emotion match over {len(base)} conversions ({n_eval} sources × 4 targets): "
            + ", ".join(f"{j} {avg[f'match_{j} (%)']:.1f} %" for j in J)
            + f"; WER {avg['WER (%)']:.1f} %; naturalness {avg['naturalness']:.2f} (n = {int(avg['naturalness_n'])} "
            + "clips). Most frequent wrong label: " + ", ".join(
                f"{j} {w.index[0]} ({w.iloc[0]:.0f} % of errors)" for j, w in wrong.items() if len(w))
            + f". Easiest target for {J[0]}: {best.idxmax()} ({best.max():.1f} %), hardest: {best.idxmin()} "
            + f"({best.min():.1f} %). The demo LALM under-expresses a target when the sentence's meaning does not fit "
            + "it, because its training data render emotion that way; these rates are a property of that data, not a "
            + "finding about real LALMs."))
    """),
    ("code", """
        for _, row in base[base.audio_path.astype(str) != ""].head(3).iterrows():
            display(Markdown(f"**{row.sample_id}** → {row.target}: *{row.hyp}* (judges: "
                             + ", ".join(f"{j}={row[f'pred_{j}']}" for j in J) + ")"))
            display(Audio(filename=row.audio_path))
    """),
])

# ----------------------------------------------------------------------------------------------------------- 02
register("02_selectors", "02 · Selector comparison (Table 3, Figure 3)", """
    ESNs identified on the IDENTIFICATION split (every neutral source converted to every target; success filter: the
    first judge says e_tgt and WER ≤ 0.15; cap c) with each selector (LAP, LAPE, MAD, CAS, random), then steered on
    TEST (seen + unseen speakers pooled) for every e_mask × e_tgt. Self effect = diagonal Δ emotion match (pp),
    cross effect = off-diagonal mean, gap = self − cross, each with a 95 % bootstrap CI over source utterances and
    McNemar's test on the self pairs. CAS and random (the headline pair) use `n_eval` sources on the diagonal and
    `n_cross` off it; LAP, LAPE and MAD use `n_sweep` sources per cell.
    On the demo LALM r and α default to `X.DEMO_RATE` and `X.DEMO_ALPHA` (printed above; docs/demo_world.md says why).
    With `human_filter` (the CSV of a filter-mode listening test on the IDENTIFICATION outputs, notebook 10 /
    docs/listening_test.md) Table 3 gains the paper's CAS-H row: CAS on the human-filtered success sets.
""", [
    ("code", """
        selectors = list(X.SELECTORS)
        base = X.baseline(world, X.TEST, n=n_eval)
        masksets = {s: X.identify(world, s, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer) for s in selectors}
        ms = masksets[selectors[0]]
        display(Markdown(f"Success sets (judge {ms.filter_judge}): before cap {ms.n_success_all}, after cap c={c}: "
                         f"{ms.n_success}. Mask sizes: " + "; ".join(f"{s}: {m.sizes()}" for s, m in masksets.items())))
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
    """),
    ("code", """
        # the headline pair with full power, the other selectors on fewer sources; each call is one pass whose
        # conditions share generate calls (row-wise edits)
        head = [s for s in masksets if s in ("CAS", "random") or s.startswith("CAS-H")]
        rest = [s for s in selectors if s not in head]
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
    """),
    ("code", """
        save(plots.selector_summary(t3, title=f"Selectors (c={c}, r={r:.3%}, steer α={alpha})"), "summary")
        save(plots.effect_heatmaps(heat, title=f"Δ emotion match (pp), judge {J[0]}"), "heatmaps")
        per = pd.concat([X.effect_ci(rows[s], base, j).assign(selector=s, judge=j) for s in head for j in J],
                        ignore_index=True)
        table(per, "per_emotion")
        per
    """),
    ("code", """
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
        display(Markdown("\\n".join(lines) + f"\\n\\nΔWER per selector (pp): " + ", ".join(
            f"{s} {100 * g.loc[(s, J[0]), 'd_wer']:+.1f}" for s in masksets)
            + ". The paper finds CAS and MAD strongest and LAPE diffuse on Qwen2.5-Omni-7B (CAS +4.27 pp self at "
            "α = 1 with ΔWER +10.65 pp)."))
        listen(base, rows["CAS"] if "CAS" in rows else next(iter(rows.values())))
    """),
])

# ----------------------------------------------------------------------------------------------------------- 03
register("03_rate_sweep", "03 · Selection rate r (Figure 4)", """
    CAS masks at the paper's rates 0.1, 0.3, 0.5 and 1.0 % (scaled by r / 0.5 % when the default r differs), c and
    α fixed, on `n_sweep` TEST sources per cell.
""", [
    ("code", """
        base = X.baseline(world, X.TEST, n=n_eval)
        paper_rates = S["paper_rates"]
        rates = [x * r / X.PAPER_RATE for x in paper_rates]
        ms = [X.identify(world, selector, rate=rr, cap=c, seed=seed, n=n_id, max_wer=max_wer) for rr in rates]
        frames = X.evaluate_settings(world, [(m, "steer", alpha) for m in ms], n=n_sweep)  # one pass, all r
        heat, summ = {}, []
        for paper_r, rr, rows in zip(paper_rates, rates, frames):
            label = f"r={rr:.2%} (paper {paper_r:.1%}), {int(np.floor(rr * N_LM))} neurons"
            heat[label] = X.effect_tables(rows, base)[J[0]]
            summ.append(X.summarize(rows, base, rate=rr, paper_rate=paper_r))
        sweep = table(pd.concat(summ, ignore_index=True), "rate_sweep")
        rows_csv(base, *frames)
        save(plots.effect_heatmaps(heat, title=f"{selector}: Δ emotion match (pp) vs r, judge {J[0]}"), "heatmaps")
        save(plots.tradeoff(sweep[sweep.judge == J[0]], x="rate", gain="self", wer="wer",
                            title="Self effect and WER vs r"), "tradeoff")
        sweep
    """),
    ("code", """
        g = sweep[sweep.judge == J[0]].set_index("rate")
        mono = bool(np.all(np.diff(g["self"].to_numpy()) >= 0))
        display(Markdown(f"Self effect by r ({J[0]}, {int(g.n_pairs.iloc[0])} self pairs each): " + ", ".join(
            f"{k:.2%}: {v.self:+.1f} pp [{v.self_lo:+.1f}, {v.self_hi:+.1f}]" for k, v in g.iterrows())
                         + f". Monotonic over the sweep: **{mono}** (the paper reports a largely monotonic trend "
                         "within 0.1-1.0 %, with more off-diagonal change at 1.0 %)."))
    """),
])

# ----------------------------------------------------------------------------------------------------------- 04
register("04_cap_sweep", "04 · Success-set size c (Figure 5)", """
    CAS masks from success sets capped at c ∈ {10, 20, 50, 100}. The sets are nested (the c=10 set is inside the
    c=20 set) and re-aggregated from the stored per-sample statistics: no generation is repeated for a new c.
    Evaluated on `n_sweep` TEST sources per cell.
""", [
    ("code", """
        base = X.baseline(world, X.TEST, n=n_eval)
        ms = [X.identify(world, selector, rate=r, cap=cc, seed=seed, n=n_id, max_wer=max_wer) for cc in S["caps"]]
        frames = X.evaluate_settings(world, [(m, "steer", alpha) for m in ms], n=n_sweep)  # one pass, all c
        heat, summ, sizes = {}, [], []
        for cc, m, rows in zip(S["caps"], ms, frames):
            heat[f"c={cc}"] = X.effect_tables(rows, base)[J[0]]
            summ.append(X.summarize(rows, base, cap=cc))
            sizes.append({"c": cc, **{f"|S_{e}|": v for e, v in m.n_success.items()}})
        sweep = table(pd.concat(summ, ignore_index=True), "cap_sweep")
        rows_csv(base, *frames)
        display(table(pd.DataFrame(sizes), "success_set_sizes", latex=False))
        save(plots.effect_heatmaps(heat, title=f"{selector}: Δ emotion match (pp) vs c, judge {J[0]}"), "heatmaps")
        sweep
    """),
    ("code", """
        sz = pd.DataFrame(sizes).set_index("c")
        binding = [cc for cc in S["caps"] if (sz.loc[cc] >= cc).any()]
        display(Markdown(f"The cap binds (some |S_e| reaches c) for c ∈ {binding}; above that every success is used "
                         "and masks stop changing. Gap by c: " + ", ".join(
                             f"c={k}: {v:+.1f} pp" for k, v in sweep[sweep.judge == J[0]].set_index('cap')['gap'].items())
                         + ". The paper sees noisy heatmaps at c=10 and cleaner separation at c≥20."))
    """),
])

# ----------------------------------------------------------------------------------------------------------- 05
register("05_intervention", "05 · Intervention design (Figure 6, Table 4, Figure 7)", """
    The same CAS masks under the four intervention kinds (steer, add, clamp, deactivate; α per kind chosen to be
    roughly comparable, `X.KIND_ALPHAS`), then steering over the α sweep (`X.DEMO_ALPHAS` on the demo LALM, the
    paper's 0.3-2 otherwise), and the emotion-vs-WER trade-off. Deactivation and the α sweep are headline conditions
    (`n_eval` sources on the diagonal); add and clamp use `n_sweep` sources.
""", [
    ("code", """
        base = X.baseline(world, X.TEST, n=n_eval)
        m = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
        kind_alphas = {**X.KIND_ALPHAS, "steer": alpha}
        kind_settings = [(m, k, a) for k, a in kind_alphas.items()]
        alphas = S["alphas"] if demo else X.ALPHAS
        alpha_settings = [(m, "steer", a) for a in alphas]
        light = [st for st in kind_settings if st[1] in ("add", "clamp")]
        heavy = [st for st in kind_settings if st not in light] + alpha_settings
        # each call is one pass: its conditions share generate calls (row-wise edits)
        fr = dict(zip([(k, a) for _, k, a in heavy], X.evaluate_settings(world, heavy, n=n_eval, n_cross=n_cross)))
        fr.update(zip([(k, a) for _, k, a in light], X.evaluate_settings(world, light, n=n_sweep)))
        heat, summ = {}, []
        for _, k, a in kind_settings:
            heat[k if k == "deactivate" else f"{k} α={a}"] = X.effect_tables(fr[(k, a)], base)[J[0]]
            summ.append(X.summarize(fr[(k, a)], base, kind=k, alpha=a))
        kinds = table(pd.concat(summ, ignore_index=True), "kinds")
        rows_csv(base, *fr.values())
        save(plots.effect_heatmaps(heat, title=f"Intervention kinds, judge {J[0]}"), "kinds_heatmaps")
        kinds
    """),
    ("code", """
        heat, summ = {}, []
        for a in alphas:
            heat[f"α={a}"] = X.effect_tables(fr[("steer", a)], base)[J[0]]
            summ.append(X.summarize(fr[("steer", a)], base, alpha=a))
        t4 = table(pd.concat(summ, ignore_index=True), "table4")
        save(plots.effect_heatmaps(heat, title=f"Steering strength α, judge {J[0]}"), "alpha_heatmaps")
        save(plots.tradeoff(t4, x="alpha", gain="self", wer="wer", hue="judge",
                            title="Emotion gain vs WER over α"), "tradeoff")
        t4
    """),
    ("code", """
        g = t4[t4.judge == J[0]].set_index("alpha")
        d = kinds[(kinds.kind == "deactivate") & (kinds.judge == J[0])].iloc[0]
        display(Markdown(f"Self effect over α ({J[0]}, {int(g.n_pairs.iloc[0])} self pairs each): " + ", ".join(
            f"{k}: {v.self:+.1f} pp [{v.self_lo:+.1f}, {v.self_hi:+.1f}]" for k, v in g.iterrows())
                         + "; WER: " + ", ".join(f"{k}: {100 * v:.1f} %" for k, v in g['wer'].items())
                         + f". Deactivation: self {d.self:+.1f} pp [{d.self_lo:+.1f}, {d.self_hi:+.1f}], cross "
                         f"{d.cross:+.1f} pp. The paper (Table 4) sees self effects grow with α while WER rises, and "
                         "a negative diagonal under deactivation."))
        listen(base, fr[("steer", max(alphas))])
    """),
])

# ----------------------------------------------------------------------------------------------------------- 06
register("06_localization", "06 · Localization (Figure 9, Table 6, Table 5)", """
    Where the CAS ESNs sit (count per decoder layer and emotion), the same pipeline on the talker (speech-generation
    side, Table 6, every selector), and how similar masks identified with the two judges' success filters are
    (Table 5: Jaccard, direct match, JSD of the layer distributions; the paper compares human- vs SER-filtered sets —
    here the two demo judges stand in for the two supervision signals, and with `human_filter` (a filter-mode
    listening test's CSV, docs/listening_test.md) the CAS-H masks are compared with the judge-filtered ones too).
""", [
    ("code", """
        from esnlib.evaluation import layer_counts

        m = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
        counts = layer_counts([m.masks[e] for e in m.masks], list(m.masks), world.sites("lm"))
        table(counts, "layer_counts", latex=False)
        save(plots.layer_heatmap({world.adapter.describe().get("model", "model"): counts},
                                 title=f"{selector} ESNs per layer (r={r:.2%})"), "layer_counts")
        counts
    """),
    ("code", """
        base = X.baseline(world, X.TEST, n=n_eval)
        mts = [X.identify(world, s, rate=r, cap=c, seed=seed, n=n_id, scope="talker", max_wer=max_wer)
               for s in S["talker_selectors"]]
        frames = X.evaluate_settings(world, [(mt, "steer", alpha) for mt in mts], n=n_sweep)
        summ = [X.summarize(rows, base, selector=s, side="talker") for s, rows in zip(S["talker_selectors"], frames)]
        t6 = table(pd.concat(summ, ignore_index=True), "table6")
        rows_csv(base, *frames)
        save(plots.selector_summary(t6, title="Steering ESNs of the talker"), "talker_summary")
        t6
    """),
    ("code", """
        if len(J) < 2 and human_filter is None:
            raise ValueError("Table 5 compares masks from two success filters: pass two judges or a human_filter file")
        sites = world.sites("lm")
        ma = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, filter_judge=J[0], max_wer=max_wer)
        parts = []
        if len(J) >= 2:
            mb = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, filter_judge=J[1], max_wer=max_wer)
            parts.append(X.mask_similarity(ma, mb, sites).assign(comparison=f"{J[0]} vs {J[1]}"))
        if human_filter is None:
            display(Markdown("No `human_filter` given: Table 5 has no CAS-H rows (human- vs judge-filtered masks)."))
        else:
            from esnlib import listening as L

            hf = L.read_filter_file(human_filter)
            mh = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer, human=hf)
            who = "human (SIMULATED raters)" if hf["simulated"].any() else "human"
            parts.append(X.mask_similarity(mh, ma, sites).assign(comparison=f"{who} (CAS-H) vs {J[0]}"))
        t5 = table(pd.concat(parts, ignore_index=True).set_index(["comparison", "emotion"]), "table5")
        means = t5.groupby(level="comparison")[["jaccard", "jsd"]].mean()
        display(Markdown("Mean over emotions: " + "; ".join(
            f"{k}: Jaccard {v.jaccard:.3f}, JSD of layer distributions {v.jsd:.3f}" for k, v in means.iterrows())
            + " (paper, human vs SER filter: Jaccard 0.13-0.22, JSD 0.021)."))
        t5
    """),
])

# ----------------------------------------------------------------------------------------------------------- 07
register("07_generalization", "07 · Generalization (Figure 10, mask transfer)", """
    CAS masks identified on IDENTIFICATION speakers, applied to TEST-SEEN (seen speakers, unseen sentences) and
    TEST-UNSEEN (unseen speakers): the pooled TEST rows of notebook 02's headline condition, split by speaker set,
    self effect per emotion with paired bootstrap 95 % CIs over source utterances.
    Then **mask transfer across corpora**: a second demo corpus built with another seed (other sentences drawn from
    the corpus pool and other per-utterance prosody; the same ten corpus voices, because the other voice sets are
    reserved for the model's and the judges' training) — the masks from corpus A are applied to corpus B's TEST
    and compared with masks identified on corpus B itself.
""", [
    ("code", """
        m = X.identify(world, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
        base = X.baseline(world, X.TEST, n=n_eval)
        rows = X.evaluate_masks(world, m, kind="steer", alpha=alpha, n=n_eval, n_cross=n_cross)
        parts = [X.effect_ci(rows[rows.split == sp], base[base.split == sp], J[0]).assign(split=sp)
                 for sp in ("TEST-SEEN", "TEST-UNSEEN")]
        fig10 = table(pd.concat(parts, ignore_index=True), "fig10")
        rows_csv(base, rows)
        save(plots.seen_unseen(fig10, title=f"Self effect, seen vs unseen speakers ({J[0]}, 95 % CI)"), "seen_unseen")
        fig10
    """),
    ("code", """
        # only for the demo world: a second demo corpus next to the first one (notebook 08 uses the same one)
        if world.corpus_kind == "demo":
            world_b = X.second_demo_world(world, n_utts=S["second_corpus_n_utts"], seed=seed)
            base_b = X.baseline(world_b, X.TEST, n=n_sweep)
            m_b = X.identify(world_b, selector, rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
            rows_ab, rows_bb = X.evaluate_settings(world_b, [(m, "steer", alpha), (m_b, "steer", alpha)], n=n_sweep)
            tr = table(pd.concat([X.summarize(rows_ab, base_b, masks_from="A (transfer)"),
                                  X.summarize(rows_bb, base_b, masks_from="B (in-corpus)")], ignore_index=True),
                       "transfer")
            save(plots.effect_heatmaps({"masks from A → B": X.effect_tables(rows_ab, base_b)[J[0]],
                                        "masks from B → B": X.effect_tables(rows_bb, base_b)[J[0]]},
                                       title=f"Mask transfer across demo corpora ({J[0]})"), "transfer")
            g = tr[tr.judge == J[0]].set_index("masks_from")
            display(Markdown(f"Gap on corpus B with transferred masks {g['gap'].iloc[0]:+.1f} pp vs in-corpus masks "
                             f"{g['gap'].iloc[1]:+.1f} pp ({n_sweep} sources per cell). Both corpora share voices, so "
                             "this is a weak transfer test; the SER paper reports only partial cross-dataset transfer "
                             "for real corpora."))
            display(tr)
        else:
            display(Markdown("Mask transfer needs a second corpus; with a real corpus, run this notebook again with "
                             "`corpus_root` pointing to it and compare the masks (see docs/notebooks.md)."))
    """),
])

# ----------------------------------------------------------------------------------------------------------- 08
register("08_recognition", "08 · Recognition neurons (SER paper)", """
    The SER paper's setting: the LALM itself answers a five-way emotion question. ESNs are identified from
    correctly recognized IDENTIFICATION utterances (all five emotions), then (a) deactivated — recall of the mask's
    own emotion should drop most — and (b) amplified (steering) — predictions should move toward the mask's emotion.
    Evaluated on TEST (seen + unseen pooled). Then label-free ways to apply masks when the true label is unknown
    (this project's reading of the paper's 2-pass / mix / union strategies, `esnlib.experiments.ser_label_free`), and
    the paper's **cross-dataset transfer**: masks identified on corpus A (this notebook's corpus) deactivated on
    corpus B's TEST items, next to masks identified on B itself. On the demo world B is the second demo corpus that
    notebook 07 builds (same voices, other sentences and prosody: a weak test); on real data any pair
    (`corpus_root`/`corpus` for A, `transfer_corpus_root`/`transfer_corpus` for B; IEMOCAP, MELD, MSP-Podcast, ESD).
""", [
    ("code", """
        n_ser = S["n_ser"]
        base = X.ser_baseline(world, X.TEST, n=n_ser)
        acc = base.groupby("emotion")["correct"].mean().mul(100).rename("recall (%)")
        display(Markdown(f"SER baseline accuracy on TEST: {100 * base.correct.mean():.1f} % over {len(base)} items."))
        m = X.identify_ser(world, selector, rate=r, seed=seed, n=n_id)
        display(Markdown(f"Correctly recognized identification items per emotion: {m.n_success_all}"))
        acc.to_frame()
    """),
    ("code", """
        deact = X.ser_effects(world, m, kind="deactivate", alpha=0.0, n=n_ser)
        amp = X.ser_effects(world, m, kind="steer", alpha=alpha, n=n_ser)
        t_d = table(X.ser_effect_table(deact, base, "accuracy"), "deactivation")
        t_a = table(X.ser_effect_table(amp, base, "predicted"), "amplification")
        ci = table(X.ser_effect_ci(deact, base), "deactivation_ci", latex=False)
        save(plots.effect_heatmaps({"deactivate: Δ recall": t_d, f"steer α={alpha}: Δ predicted as e_mask": t_a},
                                   title="SER: e_mask (rows) × true emotion (columns), pp"), "effects")
        sd, sa = X.ser_self_other(deact, base), self_cross(t_a)
        display(Markdown(
            f"Deactivation: own emotion's recall {sd['self']:+.1f} pp [{sd['self_lo']:+.1f}, {sd['self_hi']:+.1f}] "
            f"(mean over emotions, {sd['n_self']} items), other emotions {sd['other']:+.1f} pp [{sd['other_lo']:+.1f}, "
            f"{sd['other_hi']:+.1f}] (the paper: −13.5 to −36.8 % on the own emotion). Amplification: self "
            f"{sa['self']:+.1f} pp vs cross {sa['cross']:+.1f} pp."))
        ci
    """),
    ("code", """
        from esnlib.evaluation import layer_counts

        counts = layer_counts([m.masks[e] for e in m.masks], list(m.masks), world.sites("lm"))
        table(counts, "layer_counts", latex=False)
        save(plots.layer_heatmap({"SER masks": counts}, title=f"{selector} SER ESNs per layer (r={r:.2%})"),
             "layer_counts")
        lf = table(X.ser_label_free(world, m, base, deact, kind="deactivate", alpha=0.0, n=n_ser), "label_free")
        piv = lf.pivot(index="strategy", columns="emotion", values="delta")
        save(plots.effect_heatmaps({"Δ recall under deactivation": piv}, title="Label-free strategies (pp)"),
             "label_free")
        piv
    """),
    ("code", """
        # cross-dataset transfer: corpus A's masks (m) and corpus B's own masks, deactivated on B's TEST items
        if transfer_corpus_root is not None:
            world_b = X.with_corpus(world, transfer_corpus_root, corpus=transfer_corpus, task=TASK)
        elif world.corpus_kind == "demo":
            world_b = X.second_demo_world(world, n_utts=S["second_corpus_n_utts"], seed=seed)
        else:
            world_b = None
            display(Markdown("Cross-dataset transfer needs a second corpus: pass `transfer_corpus_root` (and "
                             "`transfer_corpus`)."))
        if world_b is not None:
            base_b = X.ser_baseline(world_b, X.TEST, n=n_ser)
            m_b = X.identify_ser(world_b, selector, rate=r, seed=seed, n=n_id)
            A, B = world.corpus, world_b.corpus
            tr, cells = X.ser_transfer(world_b, {f"A → B ({A} masks)": m, f"B → B ({B} masks)": m_b}, base_b,
                                       n=n_ser, seed=seed)
            table(tr, "transfer", latex=False)
            table(pd.concat(cells.values(), ignore_index=True), "transfer_ci", latex=False)
            table(X.mask_similarity(m, m_b, world.sites("lm")).set_index("emotion"), "transfer_overlap", latex=False)
            save(plots.effect_heatmaps({k: v.pivot(index="e_mask", columns="emotion", values="delta")
                                        for k, v in cells.items()},
                                       title=f"SER transfer: Δ recall on {B} under deactivation (pp)"), "transfer")
            a, b = tr.iloc[0], tr.iloc[1]
            display(Markdown(
                f"On {B} ({int(a.n_items)} TEST items, baseline accuracy {100 * base_b.correct.mean():.1f} %): "
                f"masks from {A} move the own emotion's recall by {a['self']:+.1f} pp [{a.self_lo:+.1f}, "
                f"{a.self_hi:+.1f}] (n = {a.n_self} item-mask pairs) and the other emotions' by {a.other:+.1f} pp "
                f"[{a.other_lo:+.1f}, {a.other_hi:+.1f}] (n = {a.n_other}); {B}'s own masks: self {b['self']:+.1f} pp "
                f"[{b.self_lo:+.1f}, {b.self_hi:+.1f}], other {b.other:+.1f} pp [{b.other_lo:+.1f}, {b.other_hi:+.1f}]. "
                "The SER paper reports partial cross-dataset transfer."))
            display(tr)
    """),
])

# ----------------------------------------------------------------------------------------------------------- 09
register("09_selector_validity", "09 · Selector validity (demo model)", """
    Does a selector's ranking point at neurons that *cause* the emotion? On the demo model we can measure it:
    each candidate neuron (the union of every selector's masks plus random neurons, so the pool is not only
    selector picks) is deactivated alone on DEVELOPMENT utterances, and we measure the drop of the talker's prosody
    along the neutral → e_tgt direction (`X.emotion_score`: 0 = neutral, 1 = the corpus's full emotion profile).
    Then precision@N_sel (share of each selector's mask among the candidates with the largest causal effects) and
    Spearman ρ between selector score and causal effect. Caveat: single-neuron ablations of a distributed code
    are small effects; read ρ together with its sign across emotions.
""", [
    ("code", """
        m = X.identify(world, "CAS", rate=r, cap=c, seed=seed, n=n_id, max_wer=max_wer)
        cand = X.candidate_neurons(m.P, rate=r, n_random=S["n_candidates"] // 3, seed=seed,
                                   per_emotion=max(1, S["n_candidates"] // (4 * 4)))
        display(Markdown(f"{len(cand)} candidate neurons, each ablated on {S['n_causal']} DEVELOPMENT sources × "
                         f"{len(m.emotions)} targets."))
        causal = X.causal_effects(world, cand, split="DEVELOPMENT", n=S["n_causal"])
        table(causal, "causal_effects", latex=False)
        val = table(X.selector_validity(m.P, m.emotions, causal, rate=r), "validity")
        val
    """),
    ("code", """
        import matplotlib.pyplot as plt
        import seaborn as sns

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        sns.barplot(data=val, x="selector", y="precision", hue="emotion", ax=axes[0])
        axes[0].set_title("precision@N_sel vs causal top set")
        sns.barplot(data=val, x="selector", y="spearman", hue="emotion", ax=axes[1])
        axes[1].axhline(0, color="k", lw=0.8)
        axes[1].set_title("Spearman ρ(selector score, causal effect)")
        fig.tight_layout()
        save(fig, "validity")
        piv = causal.pivot(index="neuron", columns="e_tgt", values="effect")
        fig2, ax = plt.subplots(figsize=(6, 3.5))
        sns.histplot(causal, x="effect", hue="e_tgt", ax=ax, element="step")
        ax.set_title("single-neuron ablation effects on emotion_score")
        save(fig2, "causal_effects")
        s = val.groupby("selector")[["precision", "chance", "spearman"]].mean()
        display(Markdown("Mean over emotions: " + "; ".join(
            f"{k}: precision {v.precision:.2f} (chance {v.chance:.2f}), ρ {v.spearman:+.2f}" for k, v in s.iterrows())
                         + f". Largest single-neuron effect: {causal.effect.abs().max():.3f} emotion-score units."))
    """),
])


def main() -> None:
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    for name, (title, intro, cells) in NOTEBOOKS.items():
        book = nb(name, title, intro, cells)
        nbformat.validate(book)
        nbformat.write(book, out / f"{name}.ipynb")
        print("wrote", out / f"{name}.ipynb")


if __name__ == "__main__":
    main()
