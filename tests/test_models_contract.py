"""Kimi-Audio and MiniCPM-o adapters against stand-ins that follow the models' real call contracts.

``tests/contract_models.py`` says, fact by fact, which part of each model's code the stand-in reproduces (a root
without ``generate``; a loop calling ``alm.forward`` / ``tts.model`` directly; ``chat()`` returning text and writing
audio only to a path; 3-beam search unless ``num_beams=1``; sampled TTS). Each adapter's ``evc`` and ``ser``, capture
on every scope and every intervention kind run against them, through esnlib's core (nnsight).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import contract_models as cm
import esnlib

KINDS = ("steer", "add", "clamp", "deactivate")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return cm.write_clips(str(tmp_path_factory.mktemp("clips")), 2)


@pytest.fixture(scope="module")
def kimi():
    return cm.tiny_kimi_adapter(max_new_tokens=8)


def _need_qwen3():
    import transformers

    if not hasattr(transformers, "Qwen3ForCausalLM"):  # MiniCPM-o's LM; its environment has transformers 4.51
        pytest.skip(f"transformers {transformers.__version__} has no Qwen3 (MiniCPM-o runs under 4.51)")


@pytest.fixture(scope="module")
def minicpm():
    _need_qwen3()
    return cm.tiny_minicpm_adapter()


def _transformers_at_least(major, minor):
    import transformers

    v = tuple(int("".join(c for c in x if c.isdigit()) or 0) for x in transformers.__version__.split(".")[:2])
    return v >= (major, minor)


def _same(gens_a, gens_b):
    assert [g.text for g in gens_a] == [g.text for g in gens_b]
    for a, b in zip(gens_a, gens_b):
        if a.audio is None or b.audio is None:
            assert a.audio is None and b.audio is None
        else:
            np.testing.assert_array_equal(a.audio, b.audio)


def _half_mask(sites):
    """Every other neuron of every site (flat indices), so edited and unedited neurons sit side by side."""
    return np.arange(0, sites[-1].stop, 2)


def _check_served(stats, sites, idx, kind, alpha):
    """The captured statistics are of the served (edited) activations: check the edit on the masked neurons."""
    widths = [s.width for s in sites]
    tok = np.repeat(stats.site_tokens.astype(np.float64), widths, axis=1)[:, idx]
    pos, s = stats.positive[:, idx].astype(np.float64), stats.sum[:, idx].astype(np.float64)
    assert (tok > 0).all()
    if kind == "deactivate":
        assert (pos == 0).all() and (s == 0).all()
    elif kind == "clamp":  # max(g, alpha) > 0 everywhere
        assert (pos == tok).all() and (s >= alpha * tok - 1e-3).all()
    elif kind == "add":  # alpha above |min SiLU| (0.28): g + alpha > 0 everywhere
        assert (pos == tok).all() and (s > (alpha - 0.28) * tok).all()


def _capture_rows(ad, clips, task, scope):
    """Capture over two inputs: outputs unchanged, one row per input, row 1 equal to input 1 captured alone (whose
    statistics are returned, for the caller to compare with the positions its model fed)."""
    targets = ["happy", "sad"]

    def run(rows, **kw):
        utts = [clips[i] for i in rows]
        return ad.evc(utts, [targets[i] for i in rows], **kw) if task == "evc" else ad.ser(utts, **kw)

    plain = run([0, 1])
    gens, stats = run([0, 1], capture=True, scope=scope)
    _same(gens, plain)
    sites = ad.sites(scope)
    assert stats.positive.shape == (2, sites[-1].stop) and stats.site_tokens.shape == (2, len(sites))
    _, one = run([1], capture=True, scope=scope)
    np.testing.assert_array_equal(one.positive[0], stats.positive[1])
    np.testing.assert_array_equal(one.site_tokens[0], stats.site_tokens[1])
    return one


def _intervene(ad, clips, kind, scope):
    """EVC with every other neuron of the scope edited (capture on): speech for every sample, the edit visible in
    the served statistics; for steering, alpha 0 is the identity and a strong steer changes the output."""
    sites = ad.sites(scope)
    idx = _half_mask(sites)
    alpha = {"steer": 1.0, "add": 2.0, "clamp": 0.5, "deactivate": 0.0}[kind]
    iv = esnlib.Intervention(index=idx, kind=kind, alpha=alpha)
    gens, stats = ad.evc(clips, ["happy", "sad"], capture=True, scope=scope, intervention=iv)
    assert len(gens) == 2 and all(g.audio is not None for g in gens)
    _check_served(stats, sites, idx, kind, alpha)
    if kind == "steer":
        _check_steer(ad, clips, idx, scope)
    return iv


def _check_steer(ad, clips, idx, scope):
    """Steering with alpha 0 is the identity; a strong steer changes the text or the speech."""
    base = ad.evc(clips, ["happy", "sad"])
    _same(ad.evc(clips, ["happy", "sad"], scope=scope,
                 intervention=esnlib.Intervention(index=idx, kind="steer", alpha=0.0)), base)
    moved = ad.evc(clips, ["happy", "sad"], scope=scope,
                   intervention=esnlib.Intervention(index=idx, kind="steer", alpha=50.0))
    assert [g.text for g in moved] != [g.text for g in base] or any(
        a.audio.shape != b.audio.shape or not np.array_equal(a.audio, b.audio) for a, b in zip(moved, base))


# ------------------------------------------------------------------------------------------------------------------
# the stand-ins themselves keep the contracts the adapters were wrong about
# ------------------------------------------------------------------------------------------------------------------
def test_kimi_standin_contract(clips):
    k = cm.TinyKimiAudio()
    # Qwen2PreTrainedModel only: no generate under transformers 5; 4.49/4.51 inherit one that can_generate() disowns.
    assert hasattr(k.alm, "generate") == (not _transformers_at_least(5, 0)) and not k.alm.can_generate()
    chats = [{"role": "user", "message_type": "audio", "content": clips[0].path}]
    wav, text = k.generate(chats, output_type="both")
    assert isinstance(text, str) and wav.ndim == 2 and wav.shape[0] == 1 and k.forward_calls > 1
    assert k.generate(chats, output_type="text", max_new_tokens=3)[0] is None
    with pytest.raises(NotImplementedError):
        k.generate([{"role": "system", "message_type": "text", "content": "x"}])


def test_minicpm_standin_contract(clips, tmp_path):
    from esnlib.models._hf import load_audios

    _need_qwen3()
    m = cm.TinyMiniCPMO()
    msgs = [{"role": "user", "content": [load_audios(clips[:1])[0], "say it"]}]
    out = tmp_path / "a.wav"
    text = m.chat(msgs=msgs, do_sample=False, num_beams=1, max_new_tokens=4, generate_audio=True)
    assert isinstance(text, str) and not out.exists()  # no path: no speech, and nothing says so
    assert m.chat(msgs=msgs, do_sample=False, num_beams=1, max_new_tokens=4, generate_audio=True,
                  output_audio_path=str(out)) == text and out.exists()
    assert m.prepare_generation_config(False)["num_beams"] == 3  # do_sample=False alone: beam search
    with pytest.raises(AssertionError, match="tts.forward"):
        m.tts(torch.zeros(1, 1, 24))


# ------------------------------------------------------------------------------------------------------------------
# Kimi-Audio
# ------------------------------------------------------------------------------------------------------------------
def test_kimi_evc_and_ser(kimi, clips):
    gens = kimi.evc(clips, ["happy", "sad"])
    for g, t in zip(gens, ["happy", "sad"]):
        assert isinstance(g.text, str) and g.extra["target"] == t
        assert g.audio.dtype == np.float32 and g.audio.ndim == 1 and g.audio.size > 0
    from esnlib.models.kimi_audio import evc_chats

    wav, _ = kimi.kimi.generate(evc_chats(clips[1].path, "sad"), output_type="both")
    assert abs(gens[1].audio.size - wav.numel() * 2 / 3) <= 1  # 24 kHz -> 16 kHz
    sers = kimi.ser(clips)
    assert all(g.label is None or g.label in kimi.labels for g in sers) and all(g.audio is None for g in sers)


@pytest.mark.parametrize("task", ["evc", "ser"])
@pytest.mark.parametrize("scope", ["lm", "talker", "both"])
def test_kimi_capture_every_scope(kimi, clips, scope, task):
    """Capture on a root without generate, through a loop calling alm.forward: outputs unchanged, one row per input,
    every position the loop feeds counted on both stacks (both run in alm.model once per step)."""
    one = _capture_rows(kimi, clips, task, scope)
    assert (one.site_tokens[0] == kimi.kimi.positions_fed).all()  # what the last call fed alm.forward


@pytest.mark.parametrize("scope", ["lm", "talker"])
@pytest.mark.parametrize("kind", KINDS)
def test_kimi_interventions(kimi, clips, kind, scope):
    iv = _intervene(kimi, clips, kind, scope)
    assert len(kimi.ser(clips, intervention=iv, scope=scope)) == 2


def test_kimi_rowwise_intervention_is_sliced_per_sample(kimi, clips):
    """A RowwiseIntervention (the sweeps' one edit per input) reaches each one-sample call as its own row."""
    sites = kimi.sites("lm")
    off = esnlib.Intervention(index=np.arange(sites[-1].stop), kind="deactivate", alpha=0.0)
    _, stats = kimi.evc(clips, ["happy", "sad"], capture=True, intervention=esnlib.RowwiseIntervention([None, off]))
    assert stats.sum[0].any() and not stats.sum[1].any()


# ------------------------------------------------------------------------------------------------------------------
# MiniCPM-o
# ------------------------------------------------------------------------------------------------------------------
def test_minicpm_evc_returns_audio_seeded_per_sample(minicpm, clips):
    gens = minicpm.evc(clips, ["happy", "sad"])
    for g, t in zip(gens, ["happy", "sad"]):
        assert isinstance(g.text, str) and g.text and g.extra["target"] == t
        assert g.audio is not None and g.audio.dtype == np.float32 and g.audio.ndim == 1 and g.audio.size > 0
    # seeded: the same sample gives the same speech alone, in another order, after other draws
    torch.manual_seed(123)
    again = minicpm.evc(clips[::-1], ["sad", "happy"])[::-1]
    _same(again, gens)
    other = cm.tiny_minicpm_adapter(seed=7).evc(clips, ["happy", "sad"])
    assert [g.text for g in other] == [g.text for g in gens]  # greedy text does not depend on the seed
    assert any(a.audio.shape != b.audio.shape or not np.array_equal(a.audio, b.audio) for a, b in zip(other, gens))
    sers = minicpm.ser(clips)
    assert all(g.label is None or g.label in minicpm.labels for g in sers) and all(g.audio is None for g in sers)


@pytest.mark.parametrize("task,scope", [("evc", "lm"), ("evc", "talker"), ("evc", "both"), ("ser", "lm")])
def test_minicpm_capture_every_scope(minicpm, clips, task, scope):
    """Greedy (one row, not 3 beams) LM capture and TTS capture where its loop runs (tts.model): outputs unchanged,
    one row per input, every position fed counted."""
    one = _capture_rows(minicpm, clips, task, scope)
    want = {"lm": minicpm.model.llm_positions_fed, "talker": minicpm.model.tts.positions_fed}
    assert one.site_tokens[0].tolist() == [want[s.side] for s in minicpm.sites(scope)]


@pytest.mark.parametrize("scope", ["lm", "talker"])
@pytest.mark.parametrize("kind", KINDS)
def test_minicpm_interventions(minicpm, clips, kind, scope):
    iv = _intervene(minicpm, clips, kind, scope)
    if scope == "lm":  # SER makes no speech: LM side only
        assert len(minicpm.ser(clips, intervention=iv)) == 2


def test_minicpm_failed_speech_is_an_error_not_silence(clips, monkeypatch, capsys):
    """chat() swallows an exception in its speech step; the adapter turns the missing file into an error."""
    _need_qwen3()
    ad = cm.tiny_minicpm_adapter()

    def broken(*a, **kw):
        raise RuntimeError("vocoder exploded")

    monkeypatch.setattr(ad.model.tts, "generate", broken)
    with pytest.raises(RuntimeError, match="no speech"):
        ad.evc(clips[:1], ["happy"])
    assert "vocoder exploded" in capsys.readouterr().err
    with pytest.raises(ValueError, match="scope='lm'"):
        ad.ser(clips, scope="talker")


# ------------------------------------------------------------------------------------------------------------------
# environments: a model loaded under the wrong transformers names the command that builds its own
# ------------------------------------------------------------------------------------------------------------------
def test_wrong_environment_names_the_make_env_command(monkeypatch):
    from esnlib.models import envs
    from esnlib.models.registry import load_model

    with pytest.raises(RuntimeError, match=r"make env MODEL=kimi-audio.*\.venv-kimi-audio/bin/python"):
        envs.check_environment("kimi-audio-7b", "5.23.0")
    with pytest.raises(RuntimeError, match="transformers 4.51.0.*make env MODEL=minicpm-o"):
        envs.check_environment("minicpm-o-4.5", "4.49.0")
    with pytest.raises(RuntimeError, match="make setup"):
        envs.check_environment("qwen2.5-omni-7b", "4.51.0")
    envs.check_environment("kimi-audio-7b", "4.49.0")
    envs.check_environment("minicpm-o-4.5", "4.51.0")
    envs.check_environment("qwen2.5-omni-7b", "5.23.0")
    envs.check_environment("demo", "4.49.0")
    # through the registry, by hub id, before any of the model's code is imported or downloaded
    import transformers

    monkeypatch.setattr(transformers, "__version__", "5.23.0")
    with pytest.raises(RuntimeError, match="make env MODEL=kimi-audio"):
        load_model("moonshotai/Kimi-Audio-7B-Instruct")
    with pytest.raises(RuntimeError, match="make env MODEL=minicpm-o"):
        load_model("minicpm-o-4.5", device="cpu")
    from esnlib.models.minicpm_o import MiniCPMOAdapter

    with pytest.raises(RuntimeError, match="make env MODEL=minicpm-o"):
        MiniCPMOAdapter.from_pretrained("openbmb/MiniCPM-o-4_5", device="cpu")


def test_env_constraints_pin_the_models_transformers():
    import os

    from esnlib.models import envs

    base = os.path.join(os.path.dirname(__file__), "..", "constraints.txt")
    for env, spec in envs.ENVS.items():
        lines = envs.constraints(env, base)
        names = [ln.split("==")[0].lower().replace("_", "-") for ln in lines]
        assert f"transformers=={spec['transformers']}" in lines and names.count("transformers") == 1
        assert "torch" not in names and "tokenizers" not in names and "huggingface-hub" not in names
        assert "nnsight==0.8.1" in lines and len(names) == len(set(names))
    assert envs.main(["torch", "no-such-model"]) == 2
    assert envs.env_of("kimi-audio-7b") == "kimi-audio" and envs.env_of("qwen2-audio-7b") == envs.MAIN
