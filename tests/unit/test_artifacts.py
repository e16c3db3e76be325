"""Saved files (statistics, neuron sets, metrics) carry format, kind, model fingerprint, site and
checksums; every damaged, edited, swapped or foreign file fails with one clear error; and the
same inputs give byte-identical files, also across processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import _io

TEXTS = {lang: SENTENCES[lang][:5] for lang in ("en", "de", "ja")}


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return ln.load_model(gpt2_dir, device="cpu")


@pytest.fixture(scope="module")
def saved(gpt2, tmp_path_factory):
    """A statistics file and a LAPE and an AP neuron set of the tiny GPT-2, saved once."""
    d = tmp_path_factory.mktemp("artifacts")
    stats = ln.record(gpt2, TEXTS, progress=False)
    stats.save(d / "stats")
    lape = ln.lape(stats, top_rate=0.05)
    lape.save(d / "lape")
    ap = ln.average_precision(stats, top_k=5, bottom_k=5, progress=False)
    ap.save(d / "ap")
    return d, stats, lape, ap


def _copy(src: Path, dst: Path, stem: str) -> Path:
    for suffix in (".safetensors", ".json"):
        (dst / f"{stem}{suffix}").write_bytes((src / f"{stem}{suffix}").read_bytes())
    return dst / stem


def _load(kind: str, path: Path, model=None):
    return ln.ActivationStats.load(path) if kind == "stats" else ln.NeuronSet.load(path, model=model)


def test_sidecar_carries_format_fingerprint_site_method_and_checksums(saved):
    d, stats, lape, ap = saved
    for stem, kind in (("stats", "activation_stats"), ("lape", "neuron_set"), ("ap", "neuron_set")):
        meta = json.loads((d / f"{stem}.json").read_text())
        assert meta["format"] == _io.FORMAT_VERSION and meta["kind"] == kind
        assert {"architecture", "n_layers", "d_mlp", "weights_sha256"} <= set(meta["model"])
        assert meta["site"] == "act"
        assert meta["tensors_sha256"] == hashlib.sha256((d / f"{stem}.safetensors").read_bytes()).hexdigest()
        assert len(meta["meta_sha256"]) == 64
    assert json.loads((d / "lape.json").read_text())["method"] == "lape"
    assert json.loads((d / "ap.json").read_text())["method"] == "ap"
    assert json.loads((d / "stats.json").read_text())["pooling"] == "mean"


def test_round_trip_and_model_check(saved, gpt2, llama_dir):
    d, stats, lape, ap = saved
    for stem, original in (("lape", lape), ("ap", ap)):
        back = ln.NeuronSet.load(d / stem, model=gpt2)
        assert torch.equal(back.mask, original.mask) and torch.equal(back.bottom, original.bottom)
        assert back.model == original.model and back.site == original.site and back.method == original.method
    back = ln.ActivationStats.load(d / "stats")
    assert all(torch.equal(getattr(back, k), getattr(stats, k)) for k in ln.ActivationStats._TENSORS)
    llama = ln.load_model(llama_dir, device="cpu")
    with pytest.raises(ln.LangNeuronsError, match="another model"):
        ln.NeuronSet.load(d / "lape", model=llama)
    assert not list(d.glob(".*.tmp"))


@pytest.mark.parametrize("kind", ["stats", "lape", "ap"])
def test_truncated_tensor_file(saved, tmp_path, kind):
    path = _copy(saved[0], tmp_path, kind)
    data = path.with_suffix(".safetensors").read_bytes()
    path.with_suffix(".safetensors").write_bytes(data[: len(data) - 7])
    with pytest.raises(ln.LangNeuronsError, match="truncated or replaced"):
        _load(kind, path)


@pytest.mark.parametrize("kind", ["stats", "lape", "ap"])
@pytest.mark.parametrize("where", [9, 200, -1])
def test_flipped_tensor_bytes(saved, tmp_path, kind, where):
    """Same size, one byte changed: in the header, the middle, or the last tensor value."""
    path = _copy(saved[0], tmp_path, kind)
    data = bytearray(path.with_suffix(".safetensors").read_bytes())
    data[where] ^= 0x01
    path.with_suffix(".safetensors").write_bytes(bytes(data))
    with pytest.raises(ln.LangNeuronsError, match="does not match the checksum"):
        _load(kind, path)


@pytest.mark.parametrize("kind", ["stats", "lape"])
@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(langs=list(reversed(m["langs"]))),
        lambda m: m.update(site="post"),
        lambda m: m.update(method="ap") if "method" in m else m.update(pooling="last"),
        lambda m: m["model"].update(n_layers=m["model"]["n_layers"] + 1),
        lambda m: m["model"].update(weights_sha256="0" * 16),
        lambda m: m.update(shape=[3, 2, 1]),
    ],
    ids=["langs", "site", "method", "n_layers", "weights", "shape"],
)
def test_edited_sidecar_fields(saved, tmp_path, kind, edit):
    path = _copy(saved[0], tmp_path, kind)
    meta = json.loads(path.with_suffix(".json").read_text())
    edit(meta)
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ln.LangNeuronsError, match="was edited after it was written"):
        _load(kind, path)


def test_tensor_shape_changed_consistently(saved, tmp_path):
    """Even with the checksums recomputed, a mask of another shape than the sidecar says fails."""
    path = _copy(saved[0], tmp_path, "lape")
    st = path.with_suffix(".safetensors")
    mask = ln.NeuronSet.load(path).mask
    save_file(
        {
            "mask": mask[:, :, :-1].to(torch.uint8).contiguous(),
            "bottom": torch.zeros_like(mask[:, :, :-1], dtype=torch.uint8),
        },
        str(st),
    )
    meta = json.loads(path.with_suffix(".json").read_text())
    meta.update(bytes=st.stat().st_size, tensors_sha256=_io.file_sha256(st))
    meta["meta_sha256"] = _io._meta_sha256(meta)
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ln.LangNeuronsError, match="tensor 'mask' is shape"):
        ln.NeuronSet.load(path)
    meta["shape"] = list(mask[:, :, :-1].shape)
    meta["model"]["n_layers"] += 1
    meta["meta_sha256"] = _io._meta_sha256(meta)
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ln.LangNeuronsError, match="layers but its model has"):
        ln.NeuronSet.load(path)
    meta["model"]["n_layers"] -= 1
    meta["meta_sha256"] = _io._meta_sha256(meta)
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ln.LangNeuronsError, match="neurons per layer at site 'act' but its model has d_mlp"):
        ln.NeuronSet.load(path)


def test_other_damage(saved, tmp_path):
    d = saved[0]
    path = _copy(d, tmp_path, "lape")
    with pytest.raises(ln.LangNeuronsError, match="no neuron_set at"):
        ln.NeuronSet.load(tmp_path / "missing")
    path.with_suffix(".json").write_text('{"format": 2, "kind": "neuron')
    with pytest.raises(ln.LangNeuronsError, match="not valid JSON"):
        ln.NeuronSet.load(path)
    path.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(ln.LangNeuronsError, match="not a lang_neurons sidecar"):
        ln.NeuronSet.load(path)
    path.with_suffix(".json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ln.LangNeuronsError, match="not valid JSON"):
        ln.NeuronSet.load(path)
    stats = _copy(d, tmp_path, "stats")
    with pytest.raises(ln.LangNeuronsError, match="holds a 'activation_stats', not a 'neuron_set'"):
        ln.NeuronSet.load(stats)
    meta = json.loads((d / "lape.json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ln.LangNeuronsError, match="format 99"):
        ln.NeuronSet.load(path)
    # Tensor file of another artifact with its own (matching-size) sidecar swapped in: checksum.
    _copy(d, tmp_path, "ap")
    (tmp_path / "lape.safetensors").write_bytes((tmp_path / "ap.safetensors").read_bytes())
    path.with_suffix(".json").write_text((d / "lape.json").read_text())
    with pytest.raises(ln.LangNeuronsError, match="truncated or replaced|does not match the checksum"):
        ln.NeuronSet.load(path)
    path.with_suffix(".safetensors").unlink()
    with pytest.raises(ln.LangNeuronsError, match="expected lape.safetensors and lape.json"):
        ln.NeuronSet.load(path)


def test_saving_needs_fingerprint_and_site(tmp_path):
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    with pytest.raises(ln.LangNeuronsError, match="no complete model fingerprint"):
        ln.NeuronSet(["en", "de"], mask, "act", "lape").save(tmp_path / "x")
    fp = {"architecture": "x", "n_layers": 3, "d_mlp": 4, "weights_sha256": "0" * 16}
    with pytest.raises(ln.LangNeuronsError, match="no site"):
        ln.NeuronSet(["en", "de"], mask, "", "lape", model=fp).save(tmp_path / "x")
    assert not list(tmp_path.iterdir())


def test_version_1_files_still_load(saved, tmp_path):
    """Files written before the checksums (format 1) are read, without checksum checks."""
    path = _copy(saved[0], tmp_path, "lape")
    meta = json.loads(path.with_suffix(".json").read_text())
    for key in ("tensors_sha256", "meta_sha256"):
        del meta[key]
    meta["format"] = 1
    path.with_suffix(".json").write_text(json.dumps(meta))
    assert torch.equal(ln.NeuronSet.load(path).mask, saved[2].mask)


def test_metrics_json(saved, tmp_path, gpt2, llama_dir):
    lape = saved[2]
    path = tmp_path / "metrics.json"
    results = {"targets": {"de": {"baseline_rate": 0.0}}, "summary": {"add": 0.5, "baseline": float("nan")}}
    _io.save_json_artifact(path, "metrics", results, model=lape.model, site=lape.site, method=lape.method)
    back = _io.load_json_artifact(path, "metrics", model=gpt2)
    assert back["targets"] == results["targets"] and back["site"] == "act" and back["method"] == "lape"
    assert back["model"] == lape.model and back["format"] == _io.FORMAT_VERSION
    doc = json.loads(path.read_text())
    doc["summary"]["add"] = 0.9
    path.write_text(json.dumps(doc))
    with pytest.raises(ln.LangNeuronsError, match="was edited"):
        _io.load_json_artifact(path, "metrics")
    _io.save_json_artifact(path, "metrics", results, model=lape.model, site=lape.site, method=lape.method)
    with pytest.raises(ln.LangNeuronsError, match="another model"):
        _io.load_json_artifact(path, "metrics", model=ln.load_model(llama_dir, device="cpu"))
    with pytest.raises(ln.LangNeuronsError, match="not a 'neuron_set'"):
        _io.load_json_artifact(path, "neuron_set")


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "file.txt"

    def write(tmp):
        Path(tmp).write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write(target, write)
    assert not list(tmp_path.iterdir())
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write(target, write)
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


# -- determinism ---------------------------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    import lang_neurons as ln
    model_dir, out, texts = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    model = ln.load_model(model_dir, device="cpu")
    stats = ln.record(model, texts, progress=False)
    stats.save(out / "stats")
    ln.lape(stats, top_rate=0.05).save(out / "lape")
    ln.average_precision(stats, top_k=5, bottom_k=5, progress=False).save(out / "ap")
    """
)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_inputs_give_byte_identical_files(gpt2_dir, tmp_path):
    """Two fresh processes: every statistics and neuron-set file is byte-identical
    (nothing time-dependent is stored; the safetensors header has one metadata key, since a map
    of several is written in a per-process random order)."""
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        out.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(gpt2_dir), str(out), json.dumps(TEXTS)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(_digests(out))
    assert runs[0] == runs[1]
    assert set(runs[0]) == {f"{s}.{e}" for s in ("stats", "lape", "ap") for e in ("json", "safetensors")}


def test_cli_refuses_damaged_run_folder(llama_dir, tmp_path, capsys):
    """`steer` on a folder whose neuron set or statistics were damaged: one line, exit 2."""
    from lang_neurons import cli

    texts = tmp_path / "texts"
    texts.mkdir()
    for lang in ("en", "de"):
        (texts / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:6]), encoding="utf-8")
    run = tmp_path / "run"
    assert (
        cli.main(
            [
                "identify",
                "--model",
                str(llama_dir),
                "--corpus",
                str(texts),
                "--langs",
                "en,de",
                "--out",
                str(run),
                "--top-rate",
                "0.1",
                "--no-progress",
            ]
        )
        == 0
    )
    steer = [
        "steer",
        "--neurons",
        str(run),
        "--target",
        "de",
        "--samples",
        "1",
        "--max-new-tokens",
        "2",
        "--no-progress",
    ]
    originals = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    def damage(name, change):
        (run / name).write_bytes(change(originals[name]))
        capsys.readouterr()
        assert cli.main(steer) == 2
        lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("lang-neurons")]
        (run / name).write_bytes(originals[name])
        assert len(lines) == 1
        return lines[0]

    flip = lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:]  # noqa: E731
    assert "does not match the checksum" in damage("neurons_lape.safetensors", flip)
    assert "does not match the checksum" in damage("stats.safetensors", flip)
    assert "truncated" in damage("stats.safetensors", lambda b: b[:-10])
    assert "was edited" in damage("neurons_lape.json", lambda b: b.replace(b'"en"', b'"fr"', 1))
    assert "not valid JSON" in damage("stats.json", lambda b: b[: len(b) // 2])
    assert cli.main(steer) == 0  # restored: works again
