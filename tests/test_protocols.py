"""The papers' protocols as presets (lang_neurons.protocols): each sets what it documents, runs
end to end on a tiny model (explicit settings win and are listed as departures), Kojima's
translation prompt hides the target, Tang's deactivation generation, and an unknown name is one line."""

from __future__ import annotations

import inspect
import json

import pytest
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import protocols, study
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.evaluation import translation_task

LANGS = ("en", "de", "ja")
FAST = dict(samples=10, max_new_tokens=4, dev_samples=2, resamples=50, loss_texts=0, controls=1, progress=False)


@pytest.fixture(scope="module")
def tiny(llama_dir):
    model = ln.load_model(llama_dir, device="cpu")
    stats = ln.record(model, {lang: SENTENCES[lang][:8] for lang in LANGS}, progress=False)
    held = LanguageCorpus({lang: SENTENCES[lang][8:22] for lang in LANGS}, name="held", aligned=True)
    sets = {"lape": ln.lape(stats, top_rate=0.1), "ap": ln.average_precision(stats, top_k=5, bottom_k=5, progress=False)}
    return model, stats, held, sets


def test_presets_set_what_they_document():
    assert set(ln.PROTOCOLS) == {"kojima", "tang", "gurgurov"}
    accepted = set(inspect.signature(study.evaluate).parameters)
    for name, p in ln.PROTOCOLS.items():
        assert ln.protocol(name) is p and p.name == name and p.departures and p.additions
        assert set(p.evaluate) <= accepted, set(p.evaluate) - accepted
        assert p.evaluate["controls"] > 0 and p.evaluate["residual"]  # our additions stay on
        json.dumps(p.to_dict())
    k = ln.protocol("kojima")
    assert dict(k.identify) == {"method": "ap", "top_k": 1000, "bottom_k": 1000} and k.neuron_set == "ap"
    assert {key: k.evaluate[key] for key in ("methods", "prompts", "samples", "max_new_tokens", "do_sample", "temperature",
                                             "translation_template", "translation_tokens")} == {
        "methods": ("pin",), "prompts": "bos", "samples": 100, "max_new_tokens": 64, "do_sample": True, "temperature": 0.8,
        "translation_template": "kojima", "translation_tokens": 128}
    assert k.evaluate["repetition_penalty"] == 1.0 and k.deactivation_generation is None
    lape = {"method": "lape", "top_rate": 0.01, "filter_rate": 0.95, "activation_bar_ratio": 0.95}
    t, g = ln.protocol("tang"), ln.protocol("gurgurov")
    assert dict(t.identify) == lape and dict(g.identify) == lape
    assert t.deactivation_generation["value"] == 0.0 and "{text}" in t.deactivation_generation["template"]
    for p in (t, g):
        assert (p.evaluate["do_sample"], p.evaluate["repetition_penalty"], p.evaluate["prompts"]) == (False, 1.1, "source")
        assert p.evaluate["samples"] == 100 and p.evaluate["dev_share"] == 0.1
    assert (g.evaluate["methods"], g.evaluate["alpha"], g.evaluate["deactivate"], g.evaluate["deactivate_value"]) == (
        ("add",), 1.0, "source", 0.0)
    with pytest.raises(TypeError):
        k.identify["top_k"] = 5  # the presets are read-only


def test_unknown_protocol_is_one_line():
    with pytest.raises(ln.LangNeuronsError, match=r"^unknown protocol 'smith': choose from kojima, tang, gurgurov$"):
        ln.protocol("smith")


def test_kojima_translation_prompt_does_not_name_the_target():
    corpus = LanguageCorpus({lang: SENTENCES[lang][:10] for lang in ("en", "de", "fr", "ja")}, name="c", aligned=True)
    for target, name in (("de", "German"), ("fr", "French"), ("ja", "Japanese")):
        items = translation_task(corpus, "en", target, n=3, template="kojima")
        for item in items:
            assert name not in item.prompt and item.prompt.endswith("\nTarget Language:")
            assert item.prompt.startswith("Translate an English sentence into a target language.\nEnglish: ")
        assert name in translation_task(corpus, "en", target, n=3)[0].prompt  # the few-shot default names it
    assert translation_task(corpus, "de", "en", n=1, template="kojima")[0].prompt.startswith("Translate a German sentence")
    with pytest.raises(ln.LangNeuronsError, match="zero-shot"):
        translation_task(corpus, "en", "de", n=3, shots=1, template="kojima")
    with pytest.raises(ln.LangNeuronsError, match="unknown translation template"):
        translation_task(corpus, "en", "de", n=3, template="chat")


@pytest.mark.parametrize("name", ["kojima", "tang", "gurgurov"])
def test_each_preset_runs_through_the_api(tiny, name):
    model, stats, held, sets = tiny
    p = ln.protocol(name)
    extra = dict(translation_items=2, translation_tokens=4) if name == "kojima" else {}
    res = protocols.evaluate(model, sets[p.neuron_set], stats, held, name, **FAST, **extra)
    s = res["settings"]
    assert s["protocol"] == name and s["paper"] == p.paper and s["method"] == p.neuron_set
    for key, value in p.evaluate.items():
        if key not in FAST and key not in extra:
            got = s["neuron_methods"] if key == "methods" else s[key]
            assert got == (list(value) if isinstance(value, tuple) else value), key
    assert s["samples"] == 10 and "samples=10 given (the preset: 100)" in s["departures"]
    assert s["departures"][: len(p.departures)] == list(p.departures) and s["additions"] == list(p.additions)
    method = p.evaluate["methods"][0]
    assert s["methods"] == [method, method + ":random", "residual_diffmean"]
    for entry in res["targets"].values():
        assert 0 <= entry["methods"][method]["rate"] <= 1 and entry["methods"][method]["rate_interval"]["n"] == 10
    if name == "kojima":
        assert "the neurons were selected with top_k=5 (the preset: 1000)" in s["departures"]
        assert all("translation" in e["methods"]["pin"] for e in res["targets"].values())
        assert res["prompts"]["kind"] == "bos"
    else:
        assert "the neurons were selected with top_rate=0.1 (the preset: 0.01)" in s["departures"]
    assert ("deactivation_generation" in res) == (name == "tang")
    text = protocols.format_results(res)
    assert f"protocol: {name}" in text and "departures:" in text and "additions (ours):" in text
    assert ("deactivation generation (Tang et al.)" in text) == (name == "tang")
    json.dumps(res)


def test_deactivation_generation(tiny):
    model, stats, held, sets = tiny
    res = protocols.deactivation_generation(model, sets["lape"], held, samples=12, max_new_tokens=4, controls=2,
                                            progress=False)
    assert set(res) == {"settings", "langs", "per_language", "summary", "summary_interval"}
    assert res["langs"] == list(LANGS) and res["settings"]["do_sample"] is False and res["settings"]["repetition_penalty"] == 1.1
    for lang, entry in res["per_language"].items():
        assert entry["n"] == 12 and entry["neurons"] > 0 and len(entry["examples"]) == 3
        assert entry["examples"][0]["prompt"].startswith("Q: ") and entry["examples"][0]["prompt"].endswith("\nA:")
        for row in ("unsteered", "deactivated", "control"):
            rate, interval = entry[f"{row}_rate"], entry[f"{row}_interval"]
            assert 0 <= rate <= 1 and interval["low"] <= rate <= interval["high"] and interval["n"] == 12
    for row, rate in res["summary"].items():
        assert 0 <= rate <= 1 and res["summary_interval"][row]["n"] == 12 * len(LANGS)
    # greedy uses each held-out text once: 14 per language here
    few = protocols.deactivation_generation(model, sets["lape"], held, langs=["de"], samples=50, max_new_tokens=2,
                                            controls=0, intervals=False, progress=False)
    assert few["per_language"]["de"]["n"] == 14 and set(few["summary"]) == {"unsteered", "deactivated"}
    assert "summary_interval" not in few and "deactivated" in protocols.format_deactivation(few)
    with pytest.raises(ln.LangNeuronsError, match="must contain"):
        protocols.deactivation_generation(model, sets["lape"], held, template="Q:", progress=False)
