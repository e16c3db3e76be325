"""`lang-neurons identify` end to end on a tiny model, and what bad input gets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import cli


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("texts")
    for lang in ("en", "de", "ja"):
        (d / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:12]) + "\n", encoding="utf-8")
    return d


def _identify(model_dir, text_dir, out, *extra):
    return cli.main(
        [
            "identify",
            "--model",
            str(model_dir),
            "--corpus",
            str(text_dir),
            "--langs",
            "en,de,ja",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def test_identify_lape_then_ap_reuses_statistics(llama_dir, text_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _identify(llama_dir, text_dir, out, "--method", "lape", "--top-rate", "0.05") == 0
    printed = capsys.readouterr().out
    assert "LAPE neurons" in printed and "largest pairwise overlap" in printed and "first" in printed
    stats_mtime = (out / "stats.safetensors").stat().st_mtime_ns
    assert _identify(llama_dir, text_dir, out, "--method", "ap", "--top-k", "5", "--bottom-k", "5") == 0
    captured = capsys.readouterr()
    assert "reusing statistics" in captured.err
    assert (out / "stats.safetensors").stat().st_mtime_ns == stats_mtime
    ap = ln.NeuronSet.load(out / "neurons_ap")
    assert ap.counts().tolist() == [10, 10, 10] and ap.method == "ap"
    lape = ln.NeuronSet.load(out / "neurons_lape")
    assert lape.params["top_rate"] == 0.05
    settings = json.loads((out / "run.json").read_text())
    assert settings["langs"] == ["en", "de", "ja"] and settings["held_out"] == 0.2
    stats = ln.ActivationStats.load(out / "stats")
    assert stats.sentences.tolist() == [10, 10, 10]  # 12 texts per language, 20 % held out
    # The balanced LAPE variant replaces the set (other parameters) and gives equal counts.
    assert _identify(llama_dir, text_dir, out, "--method", "lape", "--per-language", "2") == 0
    balanced = ln.NeuronSet.load(out / "neurons_lape")
    assert balanced.params["per_language"] == 2 and balanced.counts().tolist() == [2, 2, 2]
    assert balanced.mask.sum(0).max() == 1


def test_console_script_runs(llama_dir, text_dir, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lang_neurons.cli",
            "identify",
            "--model",
            str(llama_dir),
            "--corpus",
            str(text_dir),
            "--langs",
            "en,de",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/no/such/model"], "does not exist"),
        (["--langs", "en,xx"], "unknown language code 'xx'"),
        (["--langs", "en,fr"], "fr"),
        (["--site", "attn"], "invalid choice"),
        (["--method", "ap", "--top-k", "100000"], "--top-k 100000 but the model has"),
        (["--batch-size", "0"], "positive integer"),
        (["--held-out", "1.5"], "--held-out"),
    ],
)
def test_bad_input_gets_one_line_and_no_files(llama_dir, text_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    # Later flags override earlier ones, so the case's arguments replace the defaults.
    argv = [
        "identify",
        "--model",
        str(llama_dir),
        "--corpus",
        str(text_dir),
        "--langs",
        "en,de,ja",
        "--out",
        str(out),
        "--no-progress",
        *args,
    ]
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse errors exit with 2 after printing usage + one error line
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_out_dir_with_another_run_is_refused(llama_dir, text_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _identify(llama_dir, text_dir, out) == 0
    before = sorted(p.name for p in out.iterdir())
    assert _identify(llama_dir, text_dir, out, "--site", "post") == 2
    assert "holds a different run (site: 'act' there, 'post' now)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert _identify(llama_dir, text_dir, out, "--site", "post", "--force") == 0
    assert ln.ActivationStats.load(out / "stats").site == "post"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert _identify(llama_dir, text_dir, foreign) == 2
    assert "not empty" in capsys.readouterr().err


def test_long_texts_are_truncated_with_a_count(llama_dir, tmp_path, capsys):
    d = tmp_path / "texts"
    d.mkdir()
    (d / "en.txt").write_text("\n".join(["word " * 400] + SENTENCES["en"][:4]))
    (d / "de.txt").write_text("\n".join(SENTENCES["de"][:5]))
    with pytest.warns(UserWarning, match="1 of 10 texts were longer than 64 tokens"):
        assert (
            cli.main(
                [
                    "identify",
                    "--model",
                    str(llama_dir),
                    "--corpus",
                    str(d),
                    "--langs",
                    "en,de",
                    "--held-out",
                    "0",
                    "--out",
                    str(tmp_path / "o"),
                    "--max-length",
                    "64",
                    "--no-progress",
                ]
            )
            == 0
        )


def test_empty_language_file(llama_dir, tmp_path, capsys):
    d = tmp_path / "texts"
    d.mkdir()
    (d / "en.txt").write_text("\n".join(SENTENCES["en"][:4]))
    (d / "de.txt").write_text("\n\n")
    assert (
        cli.main(
            [
                "identify",
                "--model",
                str(llama_dir),
                "--corpus",
                str(d),
                "--langs",
                "en,de",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "de" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_steer_and_evaluate_commands(llama_dir, tmp_path, capsys):
    d = tmp_path / "texts"
    d.mkdir()
    for lang in ("en", "de", "ja"):
        (d / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:12]))
    run = tmp_path / "run"
    assert _identify(llama_dir, d, run, "--top-rate", "0.1") == 0
    capsys.readouterr()
    assert (
        cli.main(
            [
                "steer",
                "--neurons",
                str(run),
                "--target",
                "de",
                "--samples",
                "2",
                "--max-new-tokens",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "unsteered:" in out and "steered:" in out and "Steering(" in out
    assert cli.main(["steer", "--neurons", str(run), "--target", "fr", "--no-progress"]) == 2
    assert "'fr' is not in" in capsys.readouterr().err
    assert cli.main(["steer", "--neurons", str(run), "--target", "de", "--method", "teleport"]) == 2
    assert "unknown method" in capsys.readouterr().err
    metrics = tmp_path / "metrics"
    assert (
        cli.main(
            [
                "evaluate",
                "--neurons",
                str(run),
                "--out",
                str(metrics),
                "--samples",
                "10",
                "--max-new-tokens",
                "4",
                "--translation-items",
                "0",
                "--loss-texts",
                "3",
                "--methods",
                "add,scale",
                "--no-progress",
            ]
        )
        == 0
    )
    results = json.loads((metrics / "metrics.json").read_text())
    assert set(results["targets"]) == {"de", "ja"}
    row = results["targets"]["de"]["methods"]["add"]
    assert 0 <= row["rate"] <= 1 and row["neurons"] > 0 and 0 < row["share"] < 1
    assert results["loss_matrix"]["langs"] == ["en", "de", "ja"]
    assert "mean rate" in (metrics / "metrics.txt").read_text()
    assert (
        row["rate_interval"]["n"] == 10 and row["rate_interval"]["low"] <= row["rate"] <= row["rate_interval"]["high"]
    )
    assert (
        len(results["loss_matrix"]["change_interval"]["low"]) == 3 and "n=10" in (metrics / "metrics.txt").read_text()
    )
    capsys.readouterr()
    few = tmp_path / "few"
    assert cli.main(["evaluate", "--neurons", str(run), "--out", str(few), "--samples", "5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "intervals need at least 10 samples per cell, got 5" in err and not few.exists()
    assert (
        cli.main(
            [
                "evaluate",
                "--neurons",
                str(run),
                "--out",
                str(few),
                "--samples",
                "2",
                "--max-new-tokens",
                "3",
                "--translation-items",
                "0",
                "--loss-texts",
                "0",
                "--methods",
                "add",
                "--no-intervals",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "rate_interval" not in json.loads((few / "metrics.json").read_text())["targets"]["de"]["methods"]["add"]
    assert cli.main(["evaluate", "--neurons", str(tmp_path), "--out", str(metrics)]) == 2
    assert "holds no lang-neurons run" in capsys.readouterr().err
    late = tmp_path / "late"  # a budget the projection exceeds: one line, exit 2, nothing written
    assert cli.main(["evaluate", "--neurons", str(run), "--out", str(late), "--time-budget", "0.0001"]) == 2
    err = capsys.readouterr().err
    assert "generation in " in err and "auto: " in err  # the dtype auto decided, and why
    last = err.strip().splitlines()[-1]
    assert last.startswith("lang-neurons: error: the evaluation would take about ") and "--time-budget" in last
    assert not late.exists()


def test_a_corpus_file_that_is_not_utf8_names_the_file_and_line(llama_dir, tmp_path, capsys):
    d = tmp_path / "texts"
    d.mkdir()
    (d / "en.txt").write_text("\n".join(SENTENCES["en"][:4]), encoding="utf-8")
    (d / "de.txt").write_bytes(
        "Guten Tag.\nDas Haus ist gro\u00df.\n".encode("utf-8") + "Sch\u00f6n.\n".encode("latin-1")
    )
    assert (
        cli.main(
            [
                "identify",
                "--model",
                str(llama_dir),
                "--corpus",
                str(d),
                "--langs",
                "en,de",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "de.txt is not UTF-8: line 3 has the byte 0xf6" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_parallel_folder_and_bos_flags(llama_dir, tmp_path, capsys):
    d = tmp_path / "texts"
    d.mkdir()
    for lang in ("en", "de", "ja"):  # SENTENCES are translations of each other, line by line
        (d / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:12]), encoding="utf-8")
    run = tmp_path / "run"
    assert _identify(llama_dir, d, run, "--parallel", "--top-rate", "0.1") == 0
    settings = json.loads((run / "run.json").read_text())
    assert settings["parallel"] is True and settings["skip_bos"] is True
    metrics = tmp_path / "metrics"
    assert (
        cli.main(
            [
                "evaluate",
                "--neurons",
                str(run),
                "--out",
                str(metrics),
                "--samples",
                "2",
                "--max-new-tokens",
                "3",
                "--translation-items",
                "2",
                "--translation-tokens",
                "3",
                "--loss-texts",
                "0",
                "--methods",
                "add",
                "--controls",
                "0",
                "--no-residual",
                "--no-intervals",
                "--no-progress",
            ]
        )
        == 0
    )
    results = json.loads((metrics / "metrics.json").read_text())
    assert "translation" in results["targets"]["de"]["methods"]["add"], "BLEU/chrF on the user's own parallel files"
    # Without --parallel the same folder is not aligned, so evaluate leaves translation out.
    plain = tmp_path / "plain"
    assert _identify(llama_dir, d, plain, "--top-rate", "0.1") == 0
    assert (
        cli.main(
            [
                "evaluate",
                "--neurons",
                str(plain),
                "--out",
                str(tmp_path / "m2"),
                "--samples",
                "2",
                "--max-new-tokens",
                "3",
                "--translation-items",
                "2",
                "--loss-texts",
                "0",
                "--methods",
                "add",
                "--controls",
                "0",
                "--no-residual",
                "--no-intervals",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        "translation"
        not in json.loads((tmp_path / "m2" / "metrics.json").read_text())["targets"]["de"]["methods"]["add"]
    )
    # --no-skip-bos counts the BOS position too: one more token per text, and another run.
    kept = tmp_path / "kept"
    assert _identify(llama_dir, d, kept, "--parallel", "--no-skip-bos") == 0
    with_bos, without = ln.ActivationStats.load(kept / "stats"), ln.ActivationStats.load(run / "stats")
    assert (with_bos.tokens - without.tokens).tolist() == without.sentences.tolist()
    capsys.readouterr()
    assert _identify(llama_dir, d, run, "--parallel", "--no-skip-bos") == 2
    assert "holds a different run (skip_bos: True there, False now)" in capsys.readouterr().err
    assert _identify(llama_dir, "default", tmp_path / "named", "--parallel") == 2
    assert "--parallel marks a --corpus folder" in capsys.readouterr().err


SWEEP_FAST = ["--dev-samples", "10", "--samples", "10", "--max-new-tokens", "4", "--controls", "1", "--no-images"]


def _sweep(model_dir, text_dir, out, *extra):
    return cli.main(
        ["sweep", "--model", str(model_dir), "--corpus", str(text_dir), "--langs", "en,de,ja", "--out", str(out)]
        + ["--no-progress", *SWEEP_FAST, *extra]
    )


def test_sweep_writes_its_files_and_run_takes_the_setting(llama_dir, text_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    grid = ["--top-rates", "0.05,0.1", "--alphas", "0.5,2", "--methods", "add,residual_diffmean"]
    assert _sweep(llama_dir, text_dir, out, *grid, "--residual-layers", "0,1") == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "chosen on the dev split" in printed and f"--setting {out}/chosen.json" in printed
    for name in ("run.json", "stats.safetensors", "sweep_cells.jsonl", "sweep.json", "chosen.json", "metrics.txt"):
        assert (out / name).is_file(), name
    assert {p.stem for p in (out / "figures").glob("*.html")} == {"sweep_heatmap", "sweep_lines", "test_add"}
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Chosen setting" in page and "Test split: add at its chosen setting" in page
    data = json.loads((out / "sweep.json").read_text())
    assert len(data["cells"]) == 8 and data["test"]["add"]["settings"]["samples"] == 10
    setting = ln.config.Setting.load(out / "chosen.json")
    best = data["chosen"]["add"]
    assert (setting.method, setting.top_rate, setting.alpha) == ("add", best["top_rate"], best["alpha"])
    assert setting.residual_layer == data["chosen"]["residual_diffmean"]["layer"] and setting.sweep == str(out)
    assert "test split: add" in (out / "metrics.txt").read_text()
    # again: the statistics and every cell are reused
    assert _sweep(llama_dir, text_dir, out, *grid, "--residual-layers", "0,1") == 0
    err = capsys.readouterr().err
    assert "reusing statistics" in err and "reusing 8 finished cells" in err
    # run --setting: the sweep's top rate, method, alpha and residual layer/alpha
    run = tmp_path / "run"
    argv = ["run", "--model", str(llama_dir), "--corpus", str(text_dir), "--langs", "en,de,ja", "--out", str(run)]
    argv += ["--setting", str(out / "chosen.json"), "--samples", "10", "--max-new-tokens", "4", "--dev-samples", "2"]
    assert cli.main([*argv, "--loss-texts", "0", "--controls", "1", "--no-images", "--no-progress"]) == 0
    capsys.readouterr()
    metrics = json.loads((run / "metrics.json").read_text())
    s = metrics["settings"]
    assert s["neuron_methods"] == [setting.method] and s["alpha"] == setting.alpha and s["method"] == "lape"
    assert s["setting"]["top_rate"] == setting.top_rate and "came from the sweep in" in s["setting"]["note"]
    assert (metrics["residual"]["layer"], metrics["residual"]["alpha"]) == (
        setting.residual_layer,
        setting.residual_alpha,
    )
    assert ln.NeuronSet.load(run / "neurons_lape").params["top_rate"] == setting.top_rate
    assert metrics["evaluation"]["setting"] == setting.to_dict()
    assert "came from the sweep in" in (run / "metrics.txt").read_text()
    # an explicit flag still wins over the setting; under a protocol the departures say where the rest came from
    assert (
        cli.main(
            [
                *argv,
                "--alpha",
                "3",
                "--protocol",
                "tang",
                "--no-greedy",
                "--loss-texts",
                "0",
                "--no-images",
                "--no-progress",
            ]
        )
        == 0
    )
    s = json.loads((run / "metrics.json").read_text())["settings"]
    assert s["alpha"] == 3.0 and s["protocol"] == "tang" and s["departures"][-1] == setting.describe()
    assert f"top_rate={setting.top_rate!r} (the preset: 0.01)" in " ".join(s["departures"])
    # the setting keeps the sweep's split and LAPE parameters; a run that would draw another split is refused
    assert setting.prompts_split is not None and setting.prompts_split["seed"] == 0 and setting.filter_rate == 0.95
    assert cli.main([*argv, "--seed", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "was chosen on the dev split drawn with seed=0, this run draws it with 1" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--alphas", ""], "the sweep grid is empty: alphas (--alphas) has no values"),
        (["--alphas", "half,1"], "--alphas takes comma-separated numbers, e.g. 0.5,1,2; got 'half,1'"),
        (["--top-rates", "0.01", "--ks", "5"], "not both"),
        (["--methods", "teleport"], "unknown method 'teleport'"),
        (["--residual-layers", "0"], "residual_layers are swept only with the method residual_diffmean"),
        (["--ks", "200"], "--ks 200: top-k plus bottom-k must fit the site's 256 neurons"),
        (["--methods", "add,residual_diffmean", "--residual-layers", "7"], "residual layer 7 is out of range"),
        (["--time-budget", "0.0001"], "dev samples, then the test), over the budget of 0.0 min left: drop alphas"),
        (["--time-budget", "0"], "expected a positive number of minutes"),
    ],
)
def test_sweep_bad_input_is_one_line(llama_dir, text_dir, tmp_path, capsys, args, message):
    try:
        code = _sweep(llama_dir, text_dir, tmp_path / "out", *args)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len([x for x in err.splitlines() if "error" in x]) == 1  # (transformers' loading bar aside)
    assert not (tmp_path / "out" / "sweep_cells.jsonl").exists()


def test_run_with_a_missing_setting_is_one_line(tmp_path, capsys):
    assert cli.main(["run", "--out", str(tmp_path / "o"), "--setting", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "chosen.json"
    for data, message in [
        ({"method": "add"}, "is incomplete"),
        ({"method": "add", "alpha": None, "top_rate": 0.01}, "the setting's alpha must be a finite number, got None"),
    ]:
        bad.write_text(json.dumps({"kind": "lang_neurons.setting", **data}))
        assert cli.main(["run", "--out", str(tmp_path / "o"), "--setting", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
