"""Import and export published neuron masks (stage 6, next to :class:`~lang_neurons.neurons.NeuronSet`).

The LAPE paper (Tang et al. 2024, repository RUCAIBox/Language-Specific-Neurons) releases its
neurons as ``torch.save``d files: a list over languages, each a list over layers of a 1-D
LongTensor of neuron indices (``masks[i][j]`` = the neurons of language ``i`` in layer ``j``).
The file does not say which language is which; the order is given by the user (the paper's is
``en, zh, fr, es, vi, id, ja``). The language-arithmetic follow-up (Gurgurov et al. 2025) uses
the same layout. The indices are MLP neurons at the activation ``act_fn(gate)`` of a gated MLP
(site ``act``), or the non-linearity's output of a GELU MLP.

    neurons = ln.NeuronSet.from_lape_masks("llama-2-7b.neuron.pth", langs=["en", "zh", ...], model=model)
    neurons.to_lape_masks("mine.neuron.pth")
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lang_neurons import _io
from lang_neurons.errors import LangNeuronsError
from lang_neurons.languages import parse_langs
from lang_neurons.models import HookedModel
from lang_neurons.neurons import NeuronSet
from lang_neurons.sites import SITES, layer_width, site_fingerprint

LapeMasks = list[list[Tensor]]
"""``masks[lang][layer]``: a 1-D LongTensor of neuron indices."""


def read_mask_file(source: str | os.PathLike | Any) -> Any:
    """The object stored in a published mask file (``torch.load(weights_only=True)``, on the CPU).

    ``source`` that is not a path (an already loaded mask object) is returned as it is. Only
    reads: :func:`from_lape_masks` checks the layout. A missing file or one that is not a
    readable torch file raises :class:`~lang_neurons.errors.LangNeuronsError`.
    """
    if not isinstance(source, (str, os.PathLike)):
        return source
    path = Path(source)
    if not path.is_file():
        raise LangNeuronsError(f"mask file {path} does not exist: give the .pth file released with the neurons")
    try:
        # weights_only: never run code from a downloaded file; plain lists of tensors load fine.
        with warnings.catch_warnings():  # torch warns about plain pickles before refusing them
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError, IndexError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise LangNeuronsError(
            f"{path} is not a readable torch mask file ({first}): expected a torch.save'd list over "
            "languages of lists over layers of LongTensors"
        ) from None


def from_lape_masks(
    source: str | os.PathLike | Sequence[Sequence[Any]],
    langs: str | Sequence[str],
    model: HookedModel | dict[str, Any],
    site: str = "act",
    method: str = "lape",
) -> NeuronSet:
    """A :class:`NeuronSet` from a published LAPE-layout mask (file path or loaded object).

    Args:
        source: a ``.pth`` file (loaded with ``torch.load(weights_only=True)``) or the object
            itself: ``masks[i][j]`` = 1-D integer tensor (or list) of the neuron indices of
            language ``i`` in layer ``j``.
        langs: the language of each entry, in the file's order (e.g. ``"en,zh,fr,es,vi,id,ja"``).
        model: the hooked model the masks were found on (or its
            :func:`~lang_neurons.models.model_fingerprint`); the number of layers and the neuron
            indices are checked against it, and the fingerprint is stored so the set is never
            applied to another model.
        site: the site the indices refer to (``act`` for the published files).
        method: recorded as the set's method (``lape`` for the papers' files).
    """
    codes = parse_langs(langs)
    if site not in SITES:
        raise LangNeuronsError(f"unknown site {site!r}: choose one of {', '.join(SITES)}")
    fingerprint = dict(model) if isinstance(model, dict) else site_fingerprint(model, site)
    if any(k not in fingerprint for k in _io.FINGERPRINT_KEYS):
        raise LangNeuronsError(
            "model must be a hooked model or its model_fingerprint(): the masks are checked against it"
        )
    n_layers, width = int(fingerprint["n_layers"]), layer_width(site, fingerprint)
    masks = read_mask_file(source)
    if not isinstance(masks, (list, tuple)):
        raise LangNeuronsError(
            f"the masks are a {type(masks).__name__}, not a list over languages of lists over layers"
        )
    if len(masks) != len(codes):
        raise LangNeuronsError(
            f"the masks hold {len(masks)} languages but {len(codes)} were named ({', '.join(codes)}): "
            "give one code per entry, in the file's order"
        )
    mask = torch.zeros(len(codes), n_layers, width, dtype=torch.bool)
    for i, (lang, layers) in enumerate(zip(codes, masks)):
        if not isinstance(layers, (list, tuple)):
            raise LangNeuronsError(f"masks[{i}] ({lang}) is a {type(layers).__name__}, not a list over layers")
        if len(layers) != n_layers:
            raise LangNeuronsError(
                f"masks[{i}] ({lang}) has {len(layers)} layers but the model has {n_layers}: these masks were made for another model"
            )
        for j, idx in enumerate(layers):
            t = idx if isinstance(idx, Tensor) else torch.as_tensor(list(idx) if not isinstance(idx, int) else [idx])
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise LangNeuronsError(
                    f"masks[{i}][{j}] ({lang}, layer {j}) holds {t.dtype} values, not integer neuron indices"
                )
            t = t.flatten().long()
            if len(t) and (int(t.min()) < 0 or int(t.max()) >= width):
                bad = int(t.max()) if int(t.max()) >= width else int(t.min())
                raise LangNeuronsError(
                    f"masks[{i}][{j}] ({lang}, layer {j}) holds neuron {bad}, out of range for {width} neurons per layer "
                    f"at site {site!r}: these masks were made for another model or site"
                )
            mask[i, j, t] = True
    params = {"imported_from": str(source) if isinstance(source, (str, os.PathLike)) else "object", "layout": "lape"}
    return NeuronSet(codes, mask, site, method, params=params, model=fingerprint)


def to_lape_masks(neurons: NeuronSet, path: str | os.PathLike | None = None, which: str = "all") -> LapeMasks:
    """Export ``neurons`` in the LAPE layout (list over languages of lists over layers of sorted
    LongTensors); with ``path``, also ``torch.save`` it there atomically.

    ``which``: ``all`` members, ``top`` (AP top-k only) or ``bottom`` (AP bottom-k only). The layout
    has no room for the language codes, the site or the model: keep ``neurons.langs`` with it.
    """
    masks = [[idx.long() for idx in neurons.indices(lang, which)] for lang in neurons.langs]
    if path is not None:
        buffer = io.BytesIO()
        torch.save(masks, buffer)
        _io.atomic_write_bytes(Path(path), buffer.getvalue())
    return masks
