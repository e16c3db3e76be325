"""Import and export of the LAPE paper's published mask layout (a torch.save'd list over languages
of lists over layers of LongTensors of neuron indices), on files the tests write in that layout."""

from __future__ import annotations

import pickle

import pytest
import torch
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import masks
from lang_neurons import steering as st

PAPER_LANGS = ["en", "zh", "fr", "es", "vi", "id", "ja"]  # the order of the paper's released files


@pytest.fixture(scope="module")
def llama(llama_dir):
    return ln.load_model(llama_dir, device="cpu")


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return ln.load_model(gpt2_dir, device="cpu")


def _paper_file(path, n_layers, d_mlp, seed=0):
    """A file in the paper's layout: per language, per layer, a LongTensor of indices (some empty)."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for _ in PAPER_LANGS:
        layers = []
        for _ in range(n_layers):
            k = int(torch.randint(0, 6, (1,), generator=g))
            layers.append(torch.randperm(d_mlp, generator=g)[:k].sort().values.long())
        data.append(layers)
    torch.save(data, path)
    return data


def test_import_paper_layout(llama, tmp_path):
    cfg = llama.cfg
    data = _paper_file(tmp_path / "llama.neuron.pth", cfg.n_layers, cfg.d_mlp)
    neurons = ln.NeuronSet.from_lape_masks(tmp_path / "llama.neuron.pth", langs=",".join(PAPER_LANGS), model=llama)
    assert neurons.langs == PAPER_LANGS and neurons.site == "act" and neurons.method == "lape"
    assert neurons.mask.shape == (7, cfg.n_layers, cfg.d_mlp)
    assert neurons.model == ln.model_fingerprint(llama)
    for i, lang in enumerate(PAPER_LANGS):
        for j, idx in enumerate(neurons.indices(lang)):
            assert idx.tolist() == data[i][j].tolist()
    assert neurons.counts().tolist() == [sum(len(t) for t in layers) for layers in data]
    # The imported set steers this model, and saves and loads like any neuron set.
    tokens = llama.to_tokens(SENTENCES["en"][0])
    with torch.inference_mode():
        plain = llama(tokens)
        with ln.steer(llama, st.scale(neurons, ["zh", "ja"], 5.0)):
            steered = llama(tokens)
    assert not torch.allclose(plain, steered)
    neurons.save(tmp_path / "imported")
    back = ln.NeuronSet.load(tmp_path / "imported", model=llama)
    assert torch.equal(back.mask, neurons.mask) and back.params["layout"] == "lape"


def test_round_trip_from_identified_neurons(llama, tmp_path):
    stats = ln.record(llama, {lang: SENTENCES[lang][:4] for lang in ("en", "de", "ja")}, progress=False)
    ap = ln.average_precision(stats, top_k=7, bottom_k=3, progress=False)
    out = tmp_path / "ap.neuron.pth"
    exported = ap.to_lape_masks(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temporary file left
    loaded = torch.load(out, weights_only=True)
    assert isinstance(loaded, list) and len(loaded) == 3 and all(len(x) == stats.n_layers for x in loaded)
    assert all(t.dtype == torch.long and t.ndim == 1 for layers in loaded for t in layers)
    assert [[t.tolist() for t in layers] for layers in loaded] == [[t.tolist() for t in layers] for layers in exported]
    back = masks.from_lape_masks(out, ["en", "de", "ja"], llama)
    assert torch.equal(back.mask, ap.mask)
    assert [sum(len(t) for t in x) for x in ap.to_lape_masks(which="top")] == [7, 7, 7]
    assert [sum(len(t) for t in x) for x in ap.to_lape_masks(which="bottom")] == [3, 3, 3]
    # From an object and from a fingerprint dict, and at site gate_up (twice as wide).
    obj = masks.from_lape_masks(exported, ["en", "de", "ja"], ln.model_fingerprint(llama))
    assert torch.equal(obj.mask, ap.mask) and obj.params["imported_from"] == "object"
    wide = [[torch.tensor([2 * llama.cfg.d_mlp - 1])] * llama.cfg.n_layers]
    assert masks.from_lape_masks(wide, ["de"], llama, site="gate_up").width == 2 * llama.cfg.d_mlp
    lists = [[[0, 3], [], 5]] if llama.cfg.n_layers == 3 else None
    if lists:
        assert masks.from_lape_masks(lists, ["de"], llama).counts().tolist() == [3]


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda n, d, p: [[torch.tensor([0])] * n] * 6, "hold 6 languages but 7 were named"),
        (lambda n, d, p: [[torch.tensor([0])] * (n + 1)] * 7, "has {n1} layers but the model has {n}"),
        (lambda n, d, p: [[torch.tensor([d])] * n] * 7, "holds neuron {d}, out of range for {d} neurons"),
        (lambda n, d, p: [[torch.tensor([-1])] * n] * 7, "holds neuron -1, out of range"),
        (lambda n, d, p: [[torch.tensor([0.5])] * n] * 7, "torch.float32 values, not integer"),
        (lambda n, d, p: [[torch.tensor([True])] * n] * 7, "torch.bool values"),
        (lambda n, d, p: {"en": []}, "a dict, not a list over languages"),
        (lambda n, d, p: [torch.tensor([0])] * 7, "is a Tensor, not a list over layers"),
    ],
    ids=["n_langs", "n_layers", "too_large", "negative", "float", "bool", "dict", "flat"],
)
def test_bad_masks(llama, tmp_path, make, message):
    n, d = llama.cfg.n_layers, llama.cfg.d_mlp
    path = tmp_path / "bad.pth"
    torch.save(make(n, d, path), path)
    with pytest.raises(ln.LangNeuronsError, match=message.format(n=n, n1=n + 1, d=d)):
        masks.from_lape_masks(path, PAPER_LANGS, llama)


def test_bad_files_and_arguments(llama, gpt2, tmp_path, capsys):
    n, d = llama.cfg.n_layers, llama.cfg.d_mlp
    good = tmp_path / "good.pth"
    _paper_file(good, n, d)
    with pytest.raises(ln.LangNeuronsError, match="does not exist"):
        masks.from_lape_masks(tmp_path / "none.pth", PAPER_LANGS, llama)
    (tmp_path / "text.pth").write_text("not a torch file")
    with pytest.raises(ln.LangNeuronsError, match="not a readable torch mask file"):
        masks.from_lape_masks(tmp_path / "text.pth", PAPER_LANGS, llama)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:300])
    with pytest.raises(ln.LangNeuronsError, match="not a readable torch mask file"):
        masks.from_lape_masks(tmp_path / "cut.pth", PAPER_LANGS, llama)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ln.LangNeuronsError, match="not a readable torch mask file"):
        masks.from_lape_masks(tmp_path / "empty.pth", PAPER_LANGS, llama)
    torch.save([_Evil()], tmp_path / "evil.pth")
    with pytest.raises(ln.LangNeuronsError, match="not a readable torch mask file"):
        masks.from_lape_masks(tmp_path / "evil.pth", ["en"], llama)
    assert "must never run" not in capsys.readouterr().out  # weights_only: no code from the file ran
    with open(tmp_path / "pickle.pth", "wb") as f:
        pickle.dump([[[0]] * n], f)
    with pytest.raises(ln.LangNeuronsError, match="not a readable torch mask file"):
        masks.from_lape_masks(tmp_path / "pickle.pth", ["en"], llama)
    with pytest.raises(ln.LangNeuronsError, match="unknown language code 'xx'"):
        masks.from_lape_masks(good, ["en", "zh", "fr", "es", "vi", "id", "xx"], llama)
    with pytest.raises(ln.LangNeuronsError, match="duplicate language"):
        masks.from_lape_masks(good, ["en", "zh", "fr", "es", "vi", "id", "en"], llama)
    with pytest.raises(ln.LangNeuronsError, match="unknown site"):
        masks.from_lape_masks(good, PAPER_LANGS, llama, site="attn")
    with pytest.raises(ln.LangNeuronsError, match="model must be a hooked model"):
        masks.from_lape_masks(good, PAPER_LANGS, {"n_layers": n})
    # A mask made for the llama, imported for another model of other sizes, or steered there.
    if (gpt2.cfg.n_layers, gpt2.cfg.d_mlp) != (n, d):
        with pytest.raises(ln.LangNeuronsError, match="another model"):
            masks.from_lape_masks(good, PAPER_LANGS, gpt2)
    neurons = masks.from_lape_masks(good, PAPER_LANGS, llama)
    with pytest.raises(ln.LangNeuronsError, match="another model"):
        with ln.steer(gpt2, st.deactivate(neurons, "zh")):
            pass
    with pytest.raises(ln.LangNeuronsError, match="which must be"):
        neurons.to_lape_masks(which="middle")


def test_cli_import_masks_then_steer(llama_dir, llama, tmp_path, capsys):
    from lang_neurons import cli

    texts = tmp_path / "texts"
    texts.mkdir()
    for lang in ("en", "de", "ja"):
        (texts / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:6]), encoding="utf-8")
    mask_file = tmp_path / "three.neuron.pth"
    torch.save(_paper_file(tmp_path / "seven.pth", llama.cfg.n_layers, llama.cfg.d_mlp)[:3], mask_file)
    out = tmp_path / "imported"
    common = ["--model", str(llama_dir), "--corpus", str(texts), "--out", str(out), "--no-progress"]
    # Bad input: one line on stderr, exit 2, nothing written.
    for argv, message in (
        ([str(mask_file), "--langs", "en,de"], "hold 3 languages but 2 were named"),
        ([str(tmp_path / "none.pth"), "--langs", "en,de,ja"], "does not exist"),
        ([str(texts / "en.txt"), "--langs", "en,de,ja"], "not a readable torch mask file"),
    ):
        assert cli.main(["import-masks", *argv, *common]) == 2
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.startswith("lang-neurons:")]  # HF's weight-loading bar may precede it
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
        assert not out.exists() or not any(out.iterdir())
    assert cli.main(["import-masks", str(mask_file), "--langs", "en,de,ja", *common]) == 0
    assert "wrote" in capsys.readouterr().out
    neurons = ln.NeuronSet.load(out / "neurons_lape", model=llama)
    assert torch.equal(neurons.mask, masks.from_lape_masks(mask_file, ["en", "de", "ja"], llama).mask)
    assert (
        cli.main(
            [
                "steer",
                "--neurons",
                str(out),
                "--target",
                "de",
                "--samples",
                "2",
                "--max-new-tokens",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "de" in capsys.readouterr().out
