"""Site ``linear`` (every Linear output of every block): on a tiny model of every MLP family,
reading it gives exactly what plain torch forward hooks on the Hugging Face modules see, and
writing one column of one module through the site's write hooks is the same edit as a torch
forward hook that sets that column of that module's output (same final logits). Recording,
LAPE, AP, neuron sets (unit histograms, files, LAPE-layout masks), steering and
``lang-neurons identify --site linear`` run on it."""

from __future__ import annotations

import pytest
import torch
from tiny_models import SENTENCES, arch_of

import lang_neurons as ln
from lang_neurons import cli, masks, report, sites
from lang_neurons import steering as st
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import attached
from lang_neurons.sites import LinearSite, resolve_site

LANGS = ("en", "de", "ja")

# The Hugging Face module (under the causal LM) of each unit kind, per family; `{l}` is the layer.
_LLAMA = {
    "attn.q": "model.layers.{l}.self_attn.q_proj",
    "attn.k": "model.layers.{l}.self_attn.k_proj",
    "attn.v": "model.layers.{l}.self_attn.v_proj",
    "attn.o": "model.layers.{l}.self_attn.o_proj",
    "mlp.gate": "model.layers.{l}.mlp.gate_proj",
    "mlp.up": "model.layers.{l}.mlp.up_proj",
    "mlp.down": "model.layers.{l}.mlp.down_proj",
}
HF_MODULES: dict[str, dict[str, str]] = {
    **{arch: _LLAMA for arch in ("llama", "mistral", "qwen2", "gemma3", "cohere")},
    "gpt2": {
        **dict.fromkeys(("attn.q", "attn.k", "attn.v"), "transformer.h.{l}.attn.c_attn"),
        "attn.o": "transformer.h.{l}.attn.c_proj",
        "mlp.in": "transformer.h.{l}.mlp.c_fc",
        "mlp.down": "transformer.h.{l}.mlp.c_proj",
    },
    "bloom": {
        **dict.fromkeys(("attn.q", "attn.k", "attn.v"), "transformer.h.{l}.self_attention.query_key_value"),
        "attn.o": "transformer.h.{l}.self_attention.dense",
        "mlp.in": "transformer.h.{l}.mlp.dense_h_to_4h",
        "mlp.down": "transformer.h.{l}.mlp.dense_4h_to_h",
    },
    "xglm": {
        "attn.q": "model.layers.{l}.self_attn.q_proj",
        "attn.k": "model.layers.{l}.self_attn.k_proj",
        "attn.v": "model.layers.{l}.self_attn.v_proj",
        "attn.o": "model.layers.{l}.self_attn.out_proj",
        "mlp.in": "model.layers.{l}.fc1",
        "mlp.down": "model.layers.{l}.fc2",
    },
}

_QKV = ("attn.q", "attn.k", "attn.v")


def _column(model, arch: str, kind: str, j: int) -> int:
    """The column of the HF module's output that column ``j`` of unit ``kind`` is: the same,
    except for q/k/v of a joint projection (GPT-2: [q | k | v]; BLOOM: [head, 3, d_head])."""
    if kind not in _QKV or arch not in ("gpt2", "bloom"):
        return j
    t, d_head = _QKV.index(kind), int(model.cfg.d_head)
    if arch == "gpt2":
        return t * int(model.cfg.d_model) + j
    return (j // d_head) * 3 * d_head + t * d_head + j % d_head


def _unit_output(model, arch: str, kind: str, out: torch.Tensor) -> torch.Tensor:
    """Unit ``kind``'s columns of its HF module's output ``out``."""
    if kind not in _QKV or arch not in ("gpt2", "bloom"):
        return out
    cols = torch.tensor([_column(model, arch, kind, j) for j in range(int(model.cfg.d_model))])
    return out[..., cols]


_MODELS: dict[str, object] = {}


def _model(path):
    if str(path) not in _MODELS:
        _MODELS[str(path)] = ln.load_model(path, device="cpu")
    return _MODELS[str(path)]


def _plain_hf(path):
    """The Hugging Face model in ``path``, loaded by transformers alone (no bridge)."""
    from transformers import AutoModelForCausalLM

    key = f"hf:{path}"
    if key not in _MODELS:
        _MODELS[key] = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return _MODELS[key]


def _hf(model, arch: str, kind: str, layer: int) -> torch.nn.Module:
    return model.get_submodule(HF_MODULES[arch][kind].format(l=layer))


def _tokens(model) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [model.to_tokens(text)[0] for text in (SENTENCES["en"][0], SENTENCES["ja"][1])]
    n = max(len(x) for x in ids)
    tokens = torch.zeros(len(ids), n, dtype=torch.long)
    mask = torch.zeros(len(ids), n, dtype=torch.long)
    for i, x in enumerate(ids):
        tokens[i, : len(x)], mask[i, : len(x)] = x, 1
    return tokens, mask


def test_units_per_family(tiny_model_dir):
    arch = arch_of(tiny_model_dir)
    model = _model(tiny_model_dir)
    site = resolve_site(model, "linear")
    assert isinstance(site, LinearSite) and site.n_layers == model.cfg.n_layers
    assert site.kinds == tuple(HF_MODULES[arch])
    for kind, width in site.units:
        mod = _hf(_plain_hf(tiny_model_dir), arch, kind, 0)
        full = getattr(mod, "out_features", None) or getattr(mod, "nf", None)
        assert width == (full // 3 if kind in _QKV and arch in ("gpt2", "bloom") else full)
    assert site.width == sum(w for _, w in site.units)
    # neuron i of a layer <-> (module, column), both ways
    for i in range(site.width):
        assert site.index_of(*site.unit_of(i)) == i
    assert site.unit_of(0) == (site.kinds[0], 0) and site.unit_of(site.width - 1)[0] == "mlp.down"
    ids = site.unit_ids()
    assert [int((ids == u).sum()) for u in range(len(site.units))] == [w for _, w in site.units]
    with pytest.raises(LangNeuronsError, match="out of range"):
        site.unit_of(site.width)
    with pytest.raises(LangNeuronsError, match="no module"):
        site.index_of("mlp.nothing", 0)
    # the site rebuilt from the fingerprint statistics keep is the same site
    fingerprint = sites.site_fingerprint(model, "linear")
    assert LinearSite.from_fingerprint(fingerprint) == site
    assert ln.Site.from_fingerprint("linear", fingerprint) == site
    assert sites.width_at("linear", fingerprint) == site.width == sites.layer_width("linear", fingerprint)


def test_reads_and_writes_hit_the_hf_module_outputs(tiny_model_dir):
    arch = arch_of(tiny_model_dir)
    model = _model(tiny_model_dir)
    site = resolve_site(model, "linear")
    tokens, mask = _tokens(model)

    # The reference is a plain Hugging Face model loaded from the same folder, with torch hooks
    # on its modules (the bridge of GPT-2 and BLOOM computes q, k and v from split weights and
    # never calls the joint qkv module, so a torch hook on that module inside the bridge would
    # not fire).
    hf = _plain_hf(tiny_model_dir)
    real = mask.bool()

    def reference() -> torch.Tensor:
        with torch.inference_mode():
            return hf(input_ids=tokens, attention_mask=mask).logits

    # Reading: the site's activation of each layer = the HF modules' outputs side by side.
    seen_hf: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for layer in range(site.n_layers):
        for kind in site.kinds:

            def keep(mod, args, out, key=(layer, kind)):
                seen_hf[key] = _unit_output(model, arch, key[1], out.detach().clone())

            handles.append(_hf(hf, arch, kind, layer).register_forward_hook(keep))
    try:
        hf_base = reference()
    finally:
        for h in handles:
            h.remove()
    read: dict[int, list] = {}

    def reader(layer, slot, n):
        def hook(x, hook=None):
            read.setdefault(layer, [None] * n)[slot] = x.detach().clone()

        return hook

    hooks = [
        (name, reader(layer, slot, len(site.kinds)))
        for layer in range(site.n_layers)
        for slot, name in enumerate(site.read_hooks(layer))
    ]
    with torch.inference_mode(), attached(model, hooks):
        base = model(tokens, attention_mask=mask)
    torch.testing.assert_close(base[real], hf_base[real], rtol=1e-5, atol=1e-5)
    for layer in range(site.n_layers):
        got = site.activation(read[layer])
        want = torch.cat([seen_hf[(layer, kind)] for kind in site.kinds], -1)
        assert got.shape == (*tokens.shape, site.width)
        torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)
        for slot, kind in enumerate(site.kinds):
            part = site.part(read[layer][slot])
            torch.testing.assert_close(part[real], seen_hf[(layer, kind)][real], rtol=1e-5, atol=1e-5)

    # Writing: column j of module m set to c through the site = the same edit by a torch hook
    # on the HF module (same logits), and the value downstream of the site's hook is the module
    # output the torch hook made.
    layer = site.n_layers - 1
    for kind, width in site.units:
        j, c = width // 3, 2.5
        index = torch.tensor([site.index_of(kind, j)])
        steer = site.write_hooks(layer, index, torch.zeros(1), torch.full((1,), c))
        assert [name for name, _ in steer] == [site.hook(layer, kind)]
        after: list[torch.Tensor] = []
        got: list[torch.Tensor] = []
        probe = [(site.hook(layer, kind), lambda x, hook=None, got=got: got.append(site.part(x).clone()))]
        with torch.inference_mode(), attached(model, steer + probe):
            by_site = model(tokens, attention_mask=mask)

        def edit(mod, args, out, j=j, c=c, after=after, kind=kind):
            out = out.clone()
            out[..., _column(model, arch, kind, j)] = c
            after.append(_unit_output(model, arch, kind, out))
            return out

        handle = _hf(hf, arch, kind, layer).register_forward_hook(edit)
        try:
            by_torch = reference()
        finally:
            handle.remove()
        assert not torch.allclose(by_site[real], base[real], atol=1e-4), f"{arch} {kind}: the edit changed nothing"
        torch.testing.assert_close(by_site[real], by_torch[real], rtol=1e-5, atol=1e-5, msg=f"{arch} {kind}")
        torch.testing.assert_close(got[0][real], after[0][real], rtol=1e-5, atol=1e-5)
        assert bool((got[0][..., j] == c).all())


@pytest.fixture(scope="module")
def linear_run(llama_dir):
    model = _model(llama_dir)
    corpus = {lang: SENTENCES[lang][:6] for lang in LANGS}
    stats = ln.record(model, corpus, site="linear", batch_size=4, progress=False)
    return model, corpus, stats


def test_recording_matches_the_mlp_sites(linear_run):
    model, corpus, stats = linear_run
    site = resolve_site(model, "linear")
    assert stats.site == "linear" and stats.width == site.width
    assert stats.model["linear_units"] == [[k, w] for k, w in site.units]
    assert stats.pooled.shape == (18, site.n_layers, site.width)
    # the gate and up columns are what site gate_up records
    gate_up = ln.record(model, corpus, site="gate_up", batch_size=4, progress=False)
    start = site.index_of("mlp.gate", 0)
    cols = slice(start, start + 2 * int(model.cfg.d_mlp))
    for name in ("active", "sums", "sq_sums", "pooled"):
        torch.testing.assert_close(getattr(stats, name)[..., cols], getattr(gate_up, name), rtol=1e-5, atol=1e-5)
    # pooled = mean over each sentence's tokens (BOS out) of the HF modules' outputs
    text = corpus["de"][2]
    ids = model.to_tokens(text)
    outs = {}
    handles = [
        _hf(model.original_model, "llama", kind, layer).register_forward_hook(
            lambda m, a, o, key=(layer, kind): outs.__setitem__(key, o[0, 1:].mean(0))
        )
        for layer in range(site.n_layers)
        for kind in site.kinds
    ]
    try:
        with torch.inference_mode():
            model(ids)
    finally:
        for h in handles:
            h.remove()
    row = stats.pooled[int((stats.pooled_lang == 1).nonzero()[2])]
    for layer in range(site.n_layers):
        want = torch.cat([outs[(layer, kind)] for kind in site.kinds])
        torch.testing.assert_close(row[layer], want, rtol=1e-5, atol=1e-5)


def test_scoring_neuron_sets_and_files(linear_run, tmp_path):
    model, _, stats = linear_run
    site = resolve_site(model, "linear")
    lape = ln.lape(stats, top_rate=0.02)
    ap = ln.average_precision(stats)
    for neurons in (lape, ap):
        assert neurons.site == "linear" and neurons.width == site.width
        hist = neurons.unit_histogram()
        assert list(hist) == list(site.kinds)
        assert torch.equal(sum(hist.values()), neurons.layer_histogram())
        fig = ln.plots.module_distribution(neurons)
        assert [t.name for t in fig.data] == list(site.kinds)
        ln.plots.module_distribution(neurons, "de")
        assert f"modules_{neurons.method}" in report.build_figures({neurons.method: neurons}, stats)
        back = ln.NeuronSet.load(neurons.save(tmp_path / neurons.method), model=model)
        assert torch.equal(back.mask, neurons.mask) and back.model == neurons.model
    assert int(ap.counts()[0]) == 2 * round(0.0045 * site.n_neurons)
    exported = lape.to_lape_masks(tmp_path / "masks.pt")
    for source in (model, stats.model):
        imported = masks.from_lape_masks(tmp_path / "masks.pt", list(LANGS), source, site="linear")
        assert torch.equal(imported.mask, lape.mask)
        assert imported.model["linear_units"] == stats.model["linear_units"]
    assert len(exported) == len(LANGS)
    with pytest.raises(LangNeuronsError, match="unit table"):
        masks.from_lape_masks(tmp_path / "masks.pt", list(LANGS), ln.model_fingerprint(model), site="linear")
    with pytest.raises(LangNeuronsError, match="linear"):
        sites.site_width("linear", 128)
    # other sites' unit histograms
    gate_up = ln.NeuronSet(
        list(LANGS), torch.ones(3, site.n_layers, 256, dtype=torch.bool), "gate_up", "t", model=stats.model
    )
    assert list(gate_up.unit_histogram()) == ["mlp.gate", "mlp.up"]


def test_steering_at_the_linear_site(linear_run):
    model, _, stats = linear_run
    site = resolve_site(model, "linear")
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(len(LANGS), stats.n_layers, stats.width, generator=g) < 0.05
    neurons = ln.NeuronSet(list(LANGS), mask, "linear", "test", model=stats.model)
    tokens = model.to_tokens("The weather today is")
    with torch.inference_mode():
        base = model(tokens)
    built = []
    mean, med = stats.mean(), stats.pooled_median()
    steerings = {
        "override": st.override(neurons, "de", med[1]),
        "deactivate": st.deactivate(neurons, "en"),
        "add": st.add(neurons, "ja", 2.0, mean[2]),
        **{m: st.language_arithmetic(neurons, stats, target="de", method=m) for m in st.METHODS},
    }
    for method, hooks in steerings.items():
        assert hooks and {name for name, _ in hooks} <= set(
            n for layer in range(site.n_layers) for n in site.read_hooks(layer)
        )
        with torch.inference_mode(), ln.steer(model, hooks):
            out = model(tokens)
        assert not torch.allclose(out, base, atol=1e-4), method
        built.append(method)
    # deactivating neuron n of module m zeroes that output column, as the unit index says
    layer, kind, col = 1, "attn.v", 5
    one = torch.zeros_like(mask)
    one[0, layer, site.index_of(kind, col)] = True
    hooks = st.deactivate(ln.NeuronSet(list(LANGS), one, "linear", "t", model=stats.model), "en")
    got = []
    probe = [(site.hook(layer, kind), lambda x, hook=None: got.append(site.part(x).clone()))]
    with torch.inference_mode(), attached(model, [*hooks, *probe]):
        model(tokens)
    assert bool((got[0][..., col] == 0).all()) and bool((got[0][..., col + 1] != 0).any())
    text = ln.generate(model, ["The weather"], hooks=steerings["add"], max_new_tokens=3, seed=0, progress=False)
    assert len(text) == 1


def test_identify_site_linear_end_to_end(llama_dir, tmp_path):
    d = tmp_path / "texts"
    d.mkdir()
    for lang in LANGS:
        (d / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:10]) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    argv = ["identify", "--model", str(llama_dir), "--corpus", str(d), "--langs", ",".join(LANGS)]
    argv += ["--out", str(out), "--no-progress", "--site", "linear"]
    assert cli.main([*argv, "--method", "ap"]) == 0
    assert cli.main([*argv, "--method", "lape", "--top-rate", "0.02"]) == 0
    ap = ln.NeuronSet.load(out / "neurons_ap")
    stats = ln.ActivationStats.load(out / "stats")
    assert ap.site == stats.site == "linear" and arch_of(llama_dir) == "llama"
    assert list(ap.unit_histogram()) == ["attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down"]
    assert ln.NeuronSet.load(out / "neurons_lape").site == "linear"
