"""ATTR (esnlib.attribution): activation x gradient of the demo talker's emotion score, on a tiny random DemoOmni.

The score is checked against what it claims to be (the first-order effect of steering a mask), the selector path
against the stored scores, and a model without gradients against its error."""
import numpy as np
import pandas as pd
import pytest
import torch

import esnlib.experiments as X
from esnlib import Intervention
from esnlib.constants import TARGET_EMOTIONS
from esnlib.validity import emotion_score
from test_experiments import CountingAdapter, _utts, _world, shared_corpus


class GradAdapter(CountingAdapter):
    def __init__(self, inner):
        super().__init__(inner)
        self.attr_samples = 0

    def attribution(self, utts, targets, **kw):
        self.attr_samples += len(utts)
        return self.inner.attribution(utts, targets, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from esnlib.models.demo import DemoAdapter, DemoOmni

    torch.manual_seed(0)
    adapter = GradAdapter(DemoAdapter(model=DemoOmni.tiny(), evc_stat_positions="all"))  # its answers: one token
    return X.load_world(adapter=adapter, corpus_root=shared_corpus(tmp_path_factory), judges="prosody",
                        naturalness=None, results_dir=tmp_path_factory.mktemp("attr") / "results", shard_size=4,
                        progress=False)


def _score(adapter, utt, target, iv=None, scope="lm"):
    g = adapter.evc([utt], [target], intervention=iv, scope=scope, batch_size=1)[0]
    return emotion_score(g.extra["prosody"], target), g.text


@pytest.mark.parametrize("scope", ["lm", "talker"])
def test_attribution_is_the_first_order_effect_of_steering(world, scope):
    ad = world.adapter.inner
    utt = world.split("DEVELOPMENT", 1)[0]
    for target in ("angry", "sad"):
        a = ad.attribution([utt], [target], scope=scope)[0]
        assert a.shape == (sum(s.width for s in ad.sites(scope)),) and np.isfinite(a).all() and a.any()
        base, text = _score(ad, utt, target)
        for top, mask in ((True, np.argsort(-a)[:8]), (True, np.argsort(a)[:8]), (False, np.arange(0, len(a), 7))):
            mask = np.sort(mask).astype(np.int64)
            alpha = 0.05  # small: the check is of the first-order term
            got, t2 = _score(ad, utt, target, Intervention(index=mask, kind="steer", alpha=alpha), scope)
            assert t2 == text  # the step keeps the greedy answer, so the talker reads the same positions
            want = alpha * float(a[mask].sum())
            if top:  # the top and bottom of the ranking move the score well above float32 noise (~1e-8 here)
                assert abs(want) > 1e-7, (scope, target, want)
            assert abs((got - base) - want) <= 0.05 * abs(want) + 2e-8, (scope, target, got - base, want)
    assert not any(p.grad is not None for p in ad.model.parameters())  # only activations got gradients


@pytest.mark.parametrize("talker_reads", ["answer", "turn"])
def test_the_talker_read_out_reads_where_generation_does(world, talker_reads):
    """The gradient pass re-runs prompt + answer and must read the talker at the positions generate's talker does
    (DemoOmni.talker_valid, for either layout): its score equals the projection of the generated prosody."""
    from esnlib import tts
    from esnlib.models.demo import DemoAdapter, DemoOmni

    torch.manual_seed(1)
    ad = DemoAdapter(model=DemoOmni.tiny(seed=1, talker_reads=talker_reads), share_prefix=False)
    m = ad.model
    for utt, t in zip(world.split("DEVELOPMENT", 2), ("angry", "sad")):
        (fed,) = ad._answers([utt], [t])
        with torch.no_grad():
            got = float(ad._talker_score(utt, t, fed)())
            inp = m.prepare_inputs([ad._feats(utt)], "evc", [t], [utt.text])
            pv = m.generate(**inp, return_audio=True).prosody[0]
        d = torch.as_tensor(tts.to_vector(tts.PROFILES[t]), dtype=pv.dtype)
        assert got == pytest.approx(float(pv @ d / (d @ d)), rel=1e-4, abs=1e-6)


def test_attribution_of_a_batch_equals_one_call_per_sample(world, monkeypatch):
    """EVC answers come from one batched generate; greedy rows do not depend on their neighbours (padded
    audio of different lengths, several targets), so each row equals the sample's attribution alone."""
    ad = world.adapter.inner
    monkeypatch.setattr(ad.model, "stop_ids", (2,))  # the tiny random thinker stops at once otherwise
    utts = world.split("DEVELOPMENT", 3)
    pairs = [(u, t) for u in utts for t in ("angry", "surprise")]
    inp = ad.model.prepare_inputs([ad._feats(u) for u, _ in pairs], "evc", [t for _, t in pairs],
                                  [u.text for u, _ in pairs])
    assert len(set(inp["feature_attention_mask"].sum(1).tolist())) > 1  # ragged audio: the batch is padded
    assert all(len(a) > 0 for a in ad._answers(*zip(*pairs)))  # the gradient pass covers answer positions
    batch = ad.attribution([u for u, _ in pairs], [t for _, t in pairs])
    for k, (u, t) in enumerate(pairs):
        assert np.array_equal(batch[k], ad.attribution([u], [t])[0]), (u.id, t)


def test_ser_attribution_is_the_first_order_effect_on_the_label_log_odds(world):
    """SER's read-out is the log-odds of the true emotion's label word against the other labels: steering a mask by a
    small alpha changes it by alpha times the mask's summed attribution."""
    from esnlib.intervention import generate

    ad = world.adapter.inner
    m = ad.model
    utt = world.split("DEVELOPMENT", 1, emotion=None)[0]

    def logp(label, iv=None):  # log-odds of the label word against the other label words
        inp = m.prepare_inputs([ad._feats(utt)], "ser")
        out = generate(m, inp, intervention=iv, sites=ad.sites("lm"), max_new_tokens=1, return_audio=False,
                       output_scores=True)
        z = out.thinker_output.scores[0][0].float()
        return float(z[m.label_ids[label]] - torch.logsumexp(z[[i for e, i in m.label_ids.items() if e != label]], 0))

    for label in ("neutral", "surprise"):
        a = ad.attribution([utt], [label], task="ser")[0]
        base = logp(label)
        for mask in (np.argsort(-a)[:8], np.argsort(a)[:8]):
            mask = np.sort(mask).astype(np.int64)
            got = logp(label, Intervention(index=mask, kind="steer", alpha=0.05)) - base
            want = 0.05 * float(a[mask].sum())
            assert abs(want) > 1e-6 and abs(got - want) <= 0.05 * abs(want) + 1e-6, (label, got, want)
    with pytest.raises(ValueError, match="scope must be 'lm'"):
        ad.attribution([utt], ["angry"], task="ser", scope="talker")


def test_identify_ser_attr(world, monkeypatch):
    # a random tiny model recognizes nothing; let every clip count as recognized so that SER success sets exist (the
    # gradients still come from the tiny model)
    inner_ser = world.adapter.inner.ser

    def ser(utts, **kw):
        utts = list(utts)
        out = inner_ser(utts, **kw)
        gens = out[0] if isinstance(out, tuple) else out
        for u, g in zip(utts, gens):
            g.label, g.text = u.emotion, u.emotion
        return out

    monkeypatch.setattr(world.adapter.inner, "ser", ser)
    m = X.identify_ser(world, "ATTR", rate=0.05, cap=2, n=12)
    assert m.selector == "ATTR" and m.scores is not None and m.scores.shape[0] == len(m.masks)
    n_lm = sum(s.width for s in world.sites("lm"))
    assert all(len(v) == int(0.05 * n_lm) for v in m.masks.values())
    before = world.adapter.attr_samples
    X.identify_ser(world, "attr", rate=0.02, cap=2, n=12)
    assert world.adapter.attr_samples == before  # read back from the store


def test_identify_attr_selects_the_top_scores_and_reuses_them(world):
    human = pd.DataFrame([{"utt_id": u.id, "target": t, "human_success": True}
                          for u in world.split("IDENTIFICATION", 4) for t in TARGET_EMOTIONS])
    before = world.adapter.attr_samples
    m = X.identify(world, "attr", rate=0.05, cap=3, n=4, human=human, max_wer=100.0)
    assert m.selector == "ATTR" and m.n_success == {e: 3 for e in TARGET_EMOTIONS}
    assert world.adapter.attr_samples - before == 4 * 3
    n_lm = sum(s.width for s in world.sites("lm"))
    for e, idx in m.masks.items():
        score = world.store.read("attribution", emotion=e, task="evc-attribution")["score"].to_numpy()
        assert len(score) == n_lm and len(idx) == int(0.05 * n_lm)
        assert score[idx].min() >= np.sort(score)[-len(idx)]  # the mask is the top of the stored ranking
    again = X.identify(world, "ATTR", rate=0.02, cap=3, n=4, human=human, max_wer=100.0)
    assert world.adapter.attr_samples - before == 4 * 3  # read from the store, not recomputed
    assert all(set(again.masks[e]) <= set(m.masks[e]) for e in m.masks)  # a smaller r keeps the top of the same ranking
    rows = X.evaluate_masks(world, m, kind="steer", alpha=0.5, n=2)
    assert len(rows) == 2 * 4 * 4 and set(rows["selector"]) == {"ATTR"}


class _NoGradients:
    """A model adapter without ``attribution``, that must not generate."""

    name, has_talker = "no-gradients", False

    def __getattr__(self, name):
        if name == "attribution":
            raise AttributeError(name)
        raise AssertionError(f"the model was used ({name}) before the bad input was reported")


def test_attr_on_a_model_without_gradients_is_an_error_before_generating(tmp_path):
    w = _world(_utts(), tmp_path)
    w.adapter = _NoGradients()
    with pytest.raises(ValueError, match="ATTR needs gradients.*'no-gradients'.*paper's selectors"):
        X.identify(w, "ATTR", rate=0.05, cap=3, n=4)


def test_selector_validity_and_candidates_take_a_ranking_from_outside_P():
    """notebook 09 puts ATTR next to the activation selectors: a ranking equal to the causal effects is perfect, its
    negation is the worst, and its top picks join the candidate pool."""
    from esnlib.selection import _top

    rng = np.random.default_rng(2)
    P = rng.uniform(0.05, 0.95, size=(4, 300))
    A = rng.normal(size=(4, 300))
    emos = list(TARGET_EMOTIONS)
    causal = pd.DataFrame([{"neuron": n, "e_tgt": e, "effect": A[i, n]} for i, e in enumerate(emos)
                           for n in range(300)])
    masks = [_top(row, 15) for row in A]
    val = X.selector_validity(P, emos, causal, rate=0.05, selectors=("LAP",),
                              extra={"ATTR": (A, masks), "anti": (-A, [_top(-row, 15) for row in A])})
    attr, anti = val[val.selector == "ATTR"], val[val.selector == "anti"]
    assert (attr["precision"] == 1.0).all() and (attr["spearman"] > 0.99).all()
    assert (anti["precision"] == 0.0).all() and (anti["spearman"] < -0.99).all()
    base = set(X.candidate_neurons(P, rate=0.05, selectors=("LAP",), per_emotion=3).tolist())
    cand = set(X.candidate_neurons(P, rate=0.05, selectors=("LAP",), per_emotion=3, extra_scores=[A]).tolist())
    picks = {int(i) for row in A for i in _top(row, 3)}
    assert picks - base and cand == base | picks


def test_success_activations_are_the_mean_activation_of_the_success_sets(world):
    """notebook 09's mask anatomy: the mean gate activation per emotion comes from the stored identification
    statistics (nothing generated again) and equals a fresh capture of the one success of each emotion."""
    src = world.split("IDENTIFICATION", 1)
    human = pd.DataFrame([{"utt_id": src[0].id, "target": t, "human_success": True} for t in TARGET_EMOTIONS])
    m = X.identify(world, "CAS", rate=0.05, cap=1, n=1, human=human, max_wer=100.0)
    before = world.adapter.evc_samples
    acts, emos = X.success_activations(world, cap=1, n=1, human=human, max_wer=100.0)
    assert world.adapter.evc_samples == before
    assert emos == list(m.emotions) and acts.shape == m.P.shape
    assert (acts[m.P == 0] <= 0).all() and (acts[m.P == 1] > 0).all()
    widths = [s.width for s in world.sites("lm")]
    for k, e in enumerate(emos):
        _, st = world.adapter.inner.evc(src, [e], capture=True, scope="lm", batch_size=1)
        st = st.numpy()
        want = st.sum[0] / np.repeat(st.site_tokens[0], widths)
        np.testing.assert_allclose(acts[k], want, rtol=1e-4, atol=1e-6)


def test_mask_anatomy_reads_level_contrast_and_first_order_effect():
    acts = np.array([[1.0, 0.1, 0.0, 2.0], [0.5, 0.0, 0.0, 2.0], [0.0, 0.2, 0.0, 2.0]])
    A = np.arange(12, dtype=float).reshape(3, 4)
    emos = ["angry", "happy", "sad"]
    t = X.mask_anatomy({"S": {"angry": [0, 1], "sad": [3]}}, acts, emos, A).set_index("e_mask")
    assert t.loc["angry", "act_own"] == pytest.approx(0.55)
    assert t.loc["angry", "act_others"] == pytest.approx((0.25 + 0.1) / 2)
    assert t.loc["angry", "contrast"] == pytest.approx(0.55 - 0.175)
    assert t.loc["angry", "abs_act_all"] == pytest.approx(3.1 / 4)
    assert t.loc["angry", "d_score_per_alpha"] == pytest.approx(0 + 1)
    assert t.loc["sad", "contrast"] == 0.0 and t.loc["sad", "d_score_per_alpha"] == pytest.approx(11)
    assert np.isnan(X.mask_anatomy({"S": {"happy": [1]}}, acts, emos)["d_score_per_alpha"]).all()
    with pytest.raises(KeyError, match="'neutral' has no success set"):
        X.mask_anatomy({"S": {"neutral": [1]}}, acts, emos)
    with pytest.raises(ValueError, match="attribution"):
        X.mask_anatomy({"S": {"sad": [1]}}, acts, emos, A[:2])


def test_contrast_masks_take_the_largest_rise_in_mean_activation():
    # contrasts (own - mean of others): angry [0.75, 0.0, 0.0, 0.0], happy [0.0, -0.15, 0.0, 0.0], sad
    # [-0.75, 0.15, 0.0, 0.0]; ties go to the lower index, as in every selector
    acts = np.array([[1.0, 0.1, 0.0, 2.0], [0.5, 0.0, 0.0, 2.0], [0.0, 0.2, 0.0, 2.0]])
    emos = ["angry", "happy", "sad"]
    got = X.contrast_masks(acts, emos, rate=0.5)  # floor(0.5 * 4) = 2 per emotion
    assert {e: v.tolist() for e, v in got.items()} == {"angry": [0, 1], "happy": [0, 2], "sad": [1, 2]}
    with pytest.raises(ValueError, match="selects floor"):
        X.contrast_masks(acts, emos, rate=0.1)
    with pytest.raises(ValueError, match="E = 2"):
        X.contrast_masks(acts, emos[:2], rate=0.5)
