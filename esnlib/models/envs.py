"""Which Python environment each real model runs in, and the check that names it when the wrong one is active.

Kimi-Audio's and MiniCPM-o's remote code is written for the transformers release their repositories document; it
does not run under esnlib's main pin (transformers 5.23). Each of them gets its own virtual environment, built by
``make env MODEL=<env>`` into ``.venv-<env>``; everything else runs in the main ``.venv`` (``make setup``).

This module is standard library only, so the Makefile can run it as a script before any environment exists:

    python3 esnlib/models/envs.py constraints kimi-audio   # pip constraints of that environment
    python3 esnlib/models/envs.py packages kimi-audio      # the model's own packages (installed last)
    python3 esnlib/models/envs.py torch kimi-audio         # the torch version it pins

Where each pin comes from (read for this module; the commit is the one read):

- Kimi-Audio: transformers 4.49.0 is the release Kimi-Audio's maintainers report working
  (github.com/MoonshotAI/Kimi-Audio issue #26, 2025-04-28: "4.49.0是可以跑通的"); its requirements.txt leaves
  transformers unpinned and pins torch==2.4.1 (MoonshotAI/Kimi-Audio requirements.txt @ 2607d515). Under
  transformers 5 its ``MoonshotKimiaForCausalLM(Qwen2PreTrainedModel)`` has no ``generate`` and its attention calls
  ``apply_rotary_pos_emb(q, k, cos, sin, position_ids)``, which 5.x's ``(q, k, cos, sin, unsqueeze_dim=1)`` rejects
  (4.49 and 4.51 still take ``position_ids``).
- MiniCPM-o 4.5: "Please ensure transformers==4.51.0 is installed" and ``torch>=2.3.0,<=2.8.0``,
  ``minicpmo-utils[all]>=1.0.5`` (OpenBMB/MiniCPM-o README.md @ 3ec4cb0e, "Inference using Hugging Face
  Transformers"); accelerate 1.12.0 (OpenBMB/minicpm-o-4_5-pytorch-simple-demo requirements.txt @ c7e16605).
- nnsight 0.8.1 in both: the version esnlib's core is written for; it declares no transformers or torch bound, and
  esnlib's core tests pass with it under transformers 4.49.0 and 4.51.0 (see docs/gpu_guide.md for what was run).
"""
from __future__ import annotations

import os
import sys

MAIN = "main"

# environment name -> pins. "torch" is installed first (its own pip call); "pins" replace the same packages' lines
# in constraints.txt; "drop" removes lines that the older transformers cannot live with (pip then resolves them
# within transformers' own bounds); "packages" are the model's own code, installed last.
ENVS = {
    "kimi-audio": {
        "transformers": "4.49.0",
        "torch": "2.4.1",
        "pins": {"transformers": "4.49.0", "nnsight": "0.8.1"},
        "drop": ("tokenizers", "huggingface_hub", "huggingface-hub", "hf-xet", "safetensors", "accelerate"),
        # kimia_infer itself (its pyproject lists flash-attn, which builds against the installed CUDA torch) and the
        # GLM-4-Voice tokenizer submodule it pulls; CUDA only.
        "packages": ("kimia_infer @ git+https://github.com/MoonshotAI/Kimi-Audio@2607d515f5b7dffa1dcc7526f9f26feb48e356c4",),
        "models": ("kimi-audio-7b",),
    },
    "minicpm-o": {
        "transformers": "4.51.0",
        "torch": "2.8.0",
        "pins": {"transformers": "4.51.0", "nnsight": "0.8.1", "accelerate": "1.12.0"},
        "drop": ("tokenizers", "huggingface_hub", "huggingface-hub", "hf-xet", "safetensors"),
        "packages": ("torchaudio==2.8.0", "minicpmo-utils[all]>=1.0.5"),
        "models": ("minicpm-o-4.5",),
    },
}
# registry name -> environment (every other model runs in the main environment)
MODEL_ENV = {m: env for env, spec in ENVS.items() for m in spec["models"]}


def env_of(model_name: str) -> str:
    """The environment a registry name runs in: an ``ENVS`` key or ``MAIN``."""
    return MODEL_ENV.get(model_name, MAIN)


def command(env: str) -> str:
    """The shell command that builds ``env``."""
    return "make setup" if env == MAIN else f"make env MODEL={env}"


def _major_minor_patch(version: str) -> tuple:
    out = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out + [0] * (3 - len(out)))


def check_environment(model_name: str, transformers_version: str | None = None) -> None:
    """Raise RuntimeError naming ``make env MODEL=...`` (or ``make setup``) when the active transformers is not the
    one ``model_name``'s code needs: a model with its own environment needs that exact release; every other real
    model needs transformers 5 (the main environment)."""
    if transformers_version is None:
        import transformers

        transformers_version = transformers.__version__
    env = env_of(model_name)
    if env == MAIN:
        if model_name == "demo" or _major_minor_patch(transformers_version) >= (5, 0, 0):
            return
        need = "transformers 5 (esnlib's main environment)"
        venv = ".venv"
    else:
        want = ENVS[env]["transformers"]
        if _major_minor_patch(transformers_version) == _major_minor_patch(want):
            return
        need = f"transformers {want}"
        venv = f".venv-{env}"
    raise RuntimeError(
        f"{model_name} needs {need}, but transformers {transformers_version} is active "
        f"(python: {sys.executable}). Build its environment with `{command(env)}` in the esnlib checkout and run "
        f"with {venv}/bin/python (e.g. {venv}/bin/python scripts/gpu_check.py --model {model_name}).")


def constraints(env: str, base_path: str) -> list[str]:
    """constraints.txt of the main environment with ``env``'s pins applied (torch is installed separately)."""
    spec = ENVS[env]
    pins = {_norm(k): v for k, v in spec["pins"].items()}
    drop = {_norm(k) for k in spec["drop"]} | {"torch"}
    out = []
    with open(base_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "==" not in line:
                continue
            name = _norm(line.split("==")[0])
            if name in drop or name in pins:
                continue
            out.append(line)
    out += [f"{k}=={v}" for k, v in spec["pins"].items()]
    return out


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("constraints", "packages", "torch", "transformers") or argv[1] not in ENVS:
        print(f"usage: envs.py constraints|packages|torch|transformers {'|'.join(ENVS)}", file=sys.stderr)
        return 2
    what, env = argv
    if what == "constraints":
        base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "constraints.txt")
        print("\n".join(constraints(env, base)))
    elif what == "packages":
        print("\n".join(ENVS[env]["packages"]))
    else:
        print(ENVS[env][what])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
