"""The papers' protocols as presets (lang_neurons.protocols, --protocol): each sets what it
documents, runs end to end on a tiny model through the API and the CLI (explicit settings win and
are listed as departures), Kojima's translation prompt hides the target, Tang's
deactivation generation, and an unknown name is one line."""

from __future__ import annotations

import inspect
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import cli, protocols, study
from lang_neurons.config import Setting
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.evaluation import translation_task

LANGS = ("en", "de", "ja")
FAST = dict(samples=10, max_new_tokens=4, dev_samples=2, resamples=50, loss_texts=0, controls=1, progress=False)


@pytest.fixture(scope="module")
def tiny(tiny_study):
    return tiny_study.model, tiny_study.stats, tiny_study.held, {"lape": tiny_study.lape, "ap": tiny_study.ap}


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
    assert {
        key: k.evaluate[key]
        for key in (
            "methods",
            "prompts",
            "samples",
            "max_new_tokens",
            "do_sample",
            "temperature",
            "translation_template",
            "translation_tokens",
        )
    } == {
        "methods": ("pin",),
        "prompts": "bos",
        "samples": 100,
        "max_new_tokens": 64,
        "do_sample": True,
        "temperature": 0.8,
        "translation_template": "kojima",
        "translation_tokens": 128,
    }
    assert k.evaluate["repetition_penalty"] == 1.0 and k.deactivation_generation is None
    lape = {"method": "lape", "top_rate": 0.01, "filter_rate": 0.95, "activation_bar_ratio": 0.95}
    t, g = ln.protocol("tang"), ln.protocol("gurgurov")
    assert dict(t.identify) == lape and dict(g.identify) == lape
    assert t.deactivation_generation["value"] == 0.0 and "{text}" in t.deactivation_generation["template"]
    for p in (t, g):
        assert (p.evaluate["do_sample"], p.evaluate["repetition_penalty"], p.evaluate["prompts"]) == (
            False,
            1.1,
            "source",
        )
        assert p.evaluate["samples"] == 100 and p.evaluate["dev_share"] == 0.1
    assert (g.evaluate["methods"], g.evaluate["alpha"], g.evaluate["deactivate"], g.evaluate["deactivate_value"]) == (
        ("add",),
        1.0,
        "source",
        0.0,
    )
    with pytest.raises(TypeError):
        k.identify["top_k"] = 5  # the presets are read-only


def test_unknown_protocol_is_one_line(tmp_path, capsys):
    with pytest.raises(ln.LangNeuronsError, match=r"^unknown protocol 'smith': choose from kojima, tang, gurgurov$"):
        ln.protocol("smith")
    for command in (["evaluate", "--neurons", str(tmp_path)], ["run"]):
        with pytest.raises(SystemExit) as e:
            cli.main([*command, "--out", str(tmp_path / "o"), "--protocol", "smith"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and "invalid choice: 'smith'" in err


def test_kojima_translation_prompt_does_not_name_the_target():
    corpus = LanguageCorpus({lang: SENTENCES[lang][:10] for lang in ("en", "de", "fr", "ja")}, name="c", aligned=True)
    for target, name in (("de", "German"), ("fr", "French"), ("ja", "Japanese")):
        items = translation_task(corpus, "en", target, n=3, template="kojima")
        for item in items:
            assert name not in item.prompt and item.prompt.endswith("\nTarget Language:")
            assert item.prompt.startswith("Translate an English sentence into a target language.\nEnglish: ")
        assert name in translation_task(corpus, "en", target, n=3)[0].prompt  # the few-shot default names it
    assert translation_task(corpus, "de", "en", n=1, template="kojima")[0].prompt.startswith(
        "Translate a German sentence"
    )
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
    json.dumps(res.to_dict())  # an EvaluationResult reads like the dict; to_dict() is the JSON


def test_deactivation_generation(tiny):
    model, stats, held, sets = tiny
    res = protocols.deactivation_generation(
        model, sets["lape"], held, samples=12, max_new_tokens=4, controls=2, progress=False
    )
    assert set(res) == {"settings", "langs", "per_language", "summary", "summary_interval"}
    assert (
        res["langs"] == list(LANGS)
        and res["settings"]["do_sample"] is False
        and res["settings"]["repetition_penalty"] == 1.1
    )
    for entry in res["per_language"].values():
        assert entry["n"] == 12 and entry["neurons"] > 0 and len(entry["examples"]) == 3
        assert entry["examples"][0]["prompt"].startswith("Q: ") and entry["examples"][0]["prompt"].endswith("\nA:")
        for row in ("unsteered", "deactivated", "control"):
            rate, interval = entry[f"{row}_rate"], entry[f"{row}_interval"]
            assert 0 <= rate <= 1 and interval["low"] <= rate <= interval["high"] and interval["n"] == 12
    for row, rate in res["summary"].items():
        assert 0 <= rate <= 1 and res["summary_interval"][row]["n"] == 12 * len(LANGS)
    # greedy uses each held-out text once: 14 per language here
    few = protocols.deactivation_generation(
        model,
        sets["lape"],
        held,
        langs=["de"],
        samples=50,
        max_new_tokens=2,
        controls=0,
        intervals=False,
        progress=False,
    )
    assert few["per_language"]["de"]["n"] == 14 and set(few["summary"]) == {"unsteered", "deactivated"}
    assert "summary_interval" not in few and "deactivated" in protocols.format_deactivation(few)
    with pytest.raises(ln.LangNeuronsError, match="must contain"):
        protocols.deactivation_generation(model, sets["lape"], held, template="Q:", progress=False)


@pytest.fixture(scope="module")
def identified(llama_dir, tmp_path_factory):
    texts = tmp_path_factory.mktemp("texts")
    for lang in LANGS:
        (texts / f"{lang}.txt").write_text("\n".join(SENTENCES[lang]) + "\n", encoding="utf-8")
    run = tmp_path_factory.mktemp("identified") / "run"
    common = [
        "identify",
        "--model",
        str(llama_dir),
        "--corpus",
        str(texts),
        "--langs",
        ",".join(LANGS),
        "--held-out",
        "0.5",
        "--out",
        str(run),
        "--no-progress",
    ]
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert cli.main([*common, "--method", "lape", "--top-rate", "0.1"]) == 0
        assert cli.main([*common, "--method", "ap", "--top-k", "5", "--bottom-k", "5"]) == 0
    return texts, run


CLI_FAST = [
    "--samples",
    "10",
    "--max-new-tokens",
    "4",
    "--dev-samples",
    "2",
    "--loss-texts",
    "0",
    "--controls",
    "1",
    "--no-progress",
]


@pytest.mark.parametrize("name", ["kojima", "tang", "gurgurov"])
def test_each_preset_runs_through_the_cli(identified, tmp_path, capsys, name):
    _, run = identified
    out = tmp_path / "metrics"
    extra = ["--translation-items", "2", "--translation-tokens", "4"] if name == "kojima" else []
    assert (
        cli.main(["evaluate", "--neurons", str(run), "--out", str(out), "--protocol", name, *CLI_FAST, *extra]) == 0
    ), capsys.readouterr().err
    p = ln.protocol(name)
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["settings"]
    assert s["protocol"] == name and s["method"] == p.neuron_set  # kojima: the AP set, without --set
    assert s["samples"] == 10 and s["max_new_tokens"] == 4  # the explicit flags won
    for key in (
        "prompts",
        "do_sample",
        "temperature",
        "repetition_penalty",
        "deactivate",
        "deactivate_value",
        "dev_share",
    ):
        assert s[key] == p.evaluate[key], key
    assert s["neuron_methods"] == list(p.evaluate["methods"])
    assert "samples=10 given (the preset: 100)" in s["departures"]
    if name == "kojima":
        assert s["translation_template"] == "kojima" and s["translation_tokens"] == 4
    txt = (out / "metrics.txt").read_text()
    assert f"protocol: {name}" in txt and p.departures[0] in txt
    assert ("deactivation generation (Tang et al.)" in txt) == (name == "tang")
    if name == "tang":
        assert set(metrics["deactivation_generation"]["per_language"]) == set(LANGS)


def test_cli_offers_every_protocol():
    """The CLI's --protocol choices (lang_neurons.choices, no torch) name exactly the presets."""
    from lang_neurons.choices import PROTOCOL_NAMES

    assert tuple(protocols.PROTOCOLS) == PROTOCOL_NAMES


def test_protocol_defaults_name_real_flags():
    parser = cli.build_parser()
    for command in ("evaluate", "run"):
        dests = {a.dest for a in parser.commands[command]._actions}
        for name in ln.PROTOCOLS:
            assert set(cli._protocol_defaults(name, command)) <= dests


def test_run_with_the_kojima_protocol_evaluates_ap_neurons(identified, llama_dir, tmp_path):
    texts, _ = identified
    out = tmp_path / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = cli.main(
            [
                "run",
                "--model",
                str(llama_dir),
                "--corpus",
                str(texts),
                "--langs",
                ",".join(LANGS),
                "--out",
                str(out),
                "--protocol",
                "kojima",
                "--top-k",
                "5",
                "--bottom-k",
                "5",
                "--translation-items",
                "0",
                "--no-images",
                *CLI_FAST,
            ]
        )
    assert code == 0, stderr.getvalue()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["method"] == "ap" and metrics["settings"]["protocol"] == "kojima"
    assert metrics["evaluation"]["evaluate_set"] == "ap" and metrics["evaluation"]["neurons"] == {
        "top_k": 5,
        "bottom_k": 5,
    }
    assert "steering evaluation (AP neurons)" in stderr.getvalue()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Steering (AP neurons)" in page and "departures" in page and "translation_items=0 given" in page


def test_generation_dtype_is_listed_among_the_departures():
    k = protocols.protocol("kojima")
    listed = protocols.departures(k, {"generation_dtype": "bfloat16"})
    assert listed[: len(k.departures)] == list(k.departures)
    assert any("bfloat16" in d and "loss matrix" in d for d in listed[len(k.departures) :])
    assert protocols.departures(k, {"generation_dtype": None}) == list(k.departures)


def test_a_sweep_setting_runs_through_the_api(tiny):
    model, stats, held, sets = tiny
    s = Setting(method="diffmean", alpha=2.0, top_rate=0.1, residual_layer=1, residual_alpha=0.5, score=0.4, sweep="sw")
    res = protocols.evaluate(model, sets["lape"], stats, held, "gurgurov", setting=s, **FAST)
    settings = res["settings"]
    assert settings["neuron_methods"] == ["diffmean"] and settings["alpha"] == 2.0
    assert (res["residual"]["layer"], res["residual"]["alpha"]) == (1, 0.5)
    assert "methods=('diffmean',) given (the preset: ('add',))" in settings["departures"]
    assert "alpha=2.0 given (the preset: 1.0)" in settings["departures"]
    line = settings["departures"][-1]
    assert line == s.describe() and "came from the sweep in sw, chosen on its dev split" in line
    assert "top_rate 0.1, method diffmean and alpha 2" in line and "residual DiffMean layer 1 and alpha 0.5" in line
    assert settings["setting"]["top_rate"] == 0.1 and line in protocols.format_results(res)
    with pytest.raises(ln.LangNeuronsError, match="the setting's neurons are selected with top_rate=0.2"):
        protocols.evaluate(model, sets["lape"], stats, held, "gurgurov", setting=Setting("add", 1.0, top_rate=0.2))
    with pytest.raises(ln.LangNeuronsError, match="top_rate \\(LAPE\\) or k \\(AP\\): give exactly one"):
        Setting("add", 1.0)
