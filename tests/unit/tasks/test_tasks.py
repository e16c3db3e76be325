"""Downstream tasks under steering: scoring against hand computation, hooks that change the
result, the loaders' schemas and clear errors, and `lang-neurons evaluate --task` end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import cli
from lang_neurons import tasks as lt
from lang_neurons.errors import LangNeuronsError


def _belebele_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append(
            {
                "link": f"https://example.org/{i}",
                "question_number": 1,
                "flores_passage": SENTENCES["en"][i % len(SENTENCES["en"])],
                "question": "What is the text about?",
                "mc_answer1": "the weather",
                "mc_answer2": "a market",
                "mc_answer3": "a train",
                "mc_answer4": "music",
                "correct_answer_num": str(1 + i % 4),
                "dialect": "eng_Latn",
            }
        )
    return rows


def _flat(rows):
    return [x for row in rows for x in row]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model(tiny_study):
    return tiny_study.model


# -- scoring against hand computation ----------------------------------------------------------
def test_option_loglikelihood_equals_a_manual_forward(model):
    prompts = ["The weather today is", "Der Markt"]
    options = [[" sunny", " cold and wet"], [" ist", " war heute voll"]]
    lls, counts = lt.option_loglikelihoods(model, prompts, options, batch_size=3, progress=False)
    for prompt, opts, row, nrow in zip(prompts, options, lls, counts):
        n_ctx = model.to_tokens(prompt)[0].shape[0]
        for option, ll, n in zip(opts, row, nrow):
            ids = model.to_tokens(prompt + option)
            with torch.inference_mode():
                logp = F.log_softmax(model(ids)[0].float(), dim=-1)
            want = sum(float(logp[p - 1, ids[0, p]]) for p in range(n_ctx, ids.shape[1]))
            assert n == ids.shape[1] - n_ctx
            assert ll == pytest.approx(want, abs=1e-4)
    # batch size (padding) does not change the numbers
    again, _ = lt.option_loglikelihoods(model, prompts, options, batch_size=1, progress=False)
    assert _flat(again) == pytest.approx(_flat(lls), abs=1e-4)


def test_trailing_space_of_the_prompt_moves_onto_the_option(model):
    a, _ = lt.option_loglikelihoods(model, ["Answer:"], [[" A"]], progress=False)
    b, _ = lt.option_loglikelihoods(model, ["Answer: "], [["A"]], progress=False)
    assert _flat(a) == pytest.approx(_flat(b))


def test_choose_normalises_per_character_and_per_byte():
    options = [" ab", " ñññ", " abcdefgh"]  # 3, 4, 9 characters; 3, 7, 9 bytes
    lls = [-3.3, -4.2, -8.1]
    assert lt.choose(lls, options, "acc") == 0  # raw: -3.3 is the highest
    assert lt.choose(lls, options, "acc_norm") == 2  # per char: -1.1, -1.05, -0.9
    # per byte: -1.1, -0.6, -0.9 -> the ñ option, which per character lost
    assert lt.choose(lls, options, "acc_bytes") == 1
    assert lt.choose([-1.0, -1.0], [" x", " y"], "acc") == 0  # ties: the first
    with pytest.raises(LangNeuronsError, match="unknown normalisation"):
        lt.choose(lls, options, "acc_tokens")


def test_squad_normalisation_exact_match_and_f1():
    assert lt.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert lt.exact_match("the Eiffel tower.", ["Eiffel Tower"]) == 1.0
    assert lt.exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    # prediction "eiffel tower in paris" vs "eiffel tower": p = 2/4, r = 2/2, F1 = 2/3
    assert lt.f1_score("Eiffel Tower in Paris", ["the Eiffel Tower"]) == pytest.approx(2 / 3)
    # the best reference counts; multiset overlap as in SQuAD v1.1
    assert lt.f1_score("a b b", ["b", "x y"]) == pytest.approx(2 * (1 / 2) * 1 / (1 / 2 + 1))
    assert lt.f1_score("", ["x"]) == 0.0 and lt.f1_score("the", ["a"]) == 1.0  # both empty after normalising
    assert lt.answer_tokens("北京 city") == ["北", "京", "city"]
    assert lt.f1_score("北京", ["北京市"]) == pytest.approx(0.8)


# -- tasks, hooks, comparisons -----------------------------------------------------------------
def test_evaluate_task_multiple_choice_matches_its_loglikelihoods(model):
    task = lt.task_from_rows("belebele", _belebele_rows(6), "en")
    assert task.kind == "multiple_choice" and task.metric == "acc_norm" and len(task) == 6
    assert task.items[0].prompt.startswith("P: ") and task.items[0].prompt.endswith("\nD: music\nAnswer:")
    assert task.items[1].answer == 1 and task.items[0].options == (" A", " B", " C", " D")
    result = ln.evaluate_task(model, task, progress=False)
    assert result.n == 6 and set(result.scores) == {"acc", "acc_norm", "acc_bytes"}
    for ll, item, pred, ok in zip(result.loglikelihoods, task.items, result.predictions, result.scores["acc_norm"]):
        assert pred == max(range(4), key=lambda k: (ll[k] / len(item.options[k]), -k))
        assert ok == float(pred == item.answer)


def test_a_hook_changes_the_loglikelihoods(model, tiny_study):
    task = lt.task_from_rows("belebele", _belebele_rows(3), "en")
    base = ln.evaluate_task(model, task, progress=False)

    def zero(x, hook):
        return torch.zeros_like(x)

    zeroed = ln.evaluate_task(model, task, hooks=[("blocks.0.hook_resid_post", zero)], progress=False)
    assert _flat(zeroed.loglikelihoods) != pytest.approx(_flat(base.loglikelihoods), abs=1e-3)
    steered = ln.evaluate_task(
        model,
        task,
        hooks=ln.language_arithmetic(tiny_study.lape, tiny_study.stats, target="de", alpha=4.0),
        progress=False,
    )
    assert _flat(steered.loglikelihoods) != pytest.approx(_flat(base.loglikelihoods), abs=1e-4)
    assert not model.hook_dict["blocks.0.hook_resid_post"].fwd_hooks  # hooks removed afterwards


def test_generation_task_and_comparison_intervals(model, tiny_study):
    rows = [{"prompt": f"{s}\nAnswer:", "answers": ["the weather", "weather"]} for s in SENTENCES["en"][:10]]
    task = lt.task_from_rows("generation", rows, "en")
    task = lt.Task(task.name, task.kind, task.lang, task.items, max_new_tokens=4)
    rows_ = {"add->de": ln.language_arithmetic(tiny_study.lape, tiny_study.stats, target="de", alpha=2.0)}
    out = lt.compare_task(model, task, rows_, progress=False, resamples=200)
    base, row = out["baseline"], out["rows"]["add->de"]
    assert out["metric"] == "f1" and out["items"] == 10 and len(base["predictions"]) == 10
    assert base["intervals"]["exact_match"]["n"] == 10  # Wilson for 0/1 scores
    f1 = row["intervals"]["f1"]
    assert f1["low"] <= row["f1"] <= f1["high"]
    diff = row["difference"]["f1"]
    assert diff["estimate"] == pytest.approx(row["f1"] - base["f1"]) and diff["low"] <= diff["estimate"] <= diff["high"]
    lines = lt.format_comparison(out)
    assert len(lines) == 2 and "vs baseline" in lines[1] and lines[0].startswith("task generation (en, n=10) f1")


def test_paired_difference_by_hand():
    a = lt.TaskResult("t", "en", "multiple_choice", "acc", {"acc": [0.0, 1.0, 0.0, 1.0]}, [0, 1, 0, 1])
    b = lt.TaskResult("t", "en", "multiple_choice", "acc", {"acc": [1.0, 1.0, 1.0, 1.0]}, [1, 1, 1, 1])
    p = lt.paired_difference(a, b, "acc", resamples=500)
    assert p.difference.estimate == pytest.approx(0.5) and p.steered.low == p.steered.high == 1.0
    assert 0 <= p.difference.low <= 0.5 <= p.difference.high <= 1
    assert lt.metric_interval(a, "acc")["k"] == 2


# -- loaders and their errors ------------------------------------------------------------------
def test_hub_schemas_build_items(tmp_path):
    xnli = lt.task_from_rows("xnli", [{"premise": "It rains", "hypothesis": "It is wet", "label": 0}], "de")
    assert xnli.items[0].prompt == "" and xnli.items[0].options[2] == "It rains, right? No, It is wet"
    sib = lt.task_from_rows("sib200", [{"index_id": 3, "category": "sports", "text": "A match."}], "fr")
    assert sib.items[0].answer == 3 and sib.items[0].options[0] == " science/technology"
    xquad = lt.task_from_rows(
        "xquad", [{"id": "q", "context": "C.", "question": "Q?", "answers": {"text": ["a"], "answer_start": [0]}}], "de"
    )
    assert xquad.kind == "generation" and xquad.items[0].answers == ("a",)
    path = _write_jsonl(tmp_path / "b.jsonl", _belebele_rows(5))
    task = ln.load_task("belebele", "en", path=path, items=3)
    assert len(task) == 3 and task.items[2].answer == 2


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(LangNeuronsError, match="unknown task 'mmlu': choose one of belebele, xnli, sib200, xquad"):
        ln.load_task("mmlu")
    rows = _belebele_rows(2)
    for r in rows:
        del r["mc_answer4"]
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(LangNeuronsError, match="has no column 'mc_answer4', which task 'belebele'") as err:
        ln.load_task("belebele", path=path)
    assert "\n" not in str(err.value)
    with pytest.raises(LangNeuronsError, match="has no column 'options'"):
        lt.task_from_rows("multiple_choice", [{"prompt": "x", "answer": 0}], "en")
    with pytest.raises(LangNeuronsError, match="does not exist"):
        ln.load_task("belebele", path=tmp_path / "none.jsonl")
    with pytest.raises(LangNeuronsError, match="use a .jsonl"):
        ln.load_task("belebele", path=_write_jsonl(tmp_path / "x.txt", rows))
    with pytest.raises(LangNeuronsError, match="XNLI has no 'ja'"):
        ln.load_task("xnli", "ja")
    with pytest.raises(LangNeuronsError, match="for a file of your own"):
        ln.load_task("generation")
    with pytest.raises(LangNeuronsError, match="correct_answer_num must be in 1..4"):
        lt.task_from_rows("belebele", [{**_belebele_rows(1)[0], "correct_answer_num": "7"}], "en")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the hub path fails fast with the fix
    with pytest.raises(LangNeuronsError, match=r"could not load Belebele .*--task-file") as err:
        ln.load_task("belebele", "de", cache_dir=tmp_path / "empty-cache")
    assert "\n" not in str(err.value)


# -- the command line --------------------------------------------------------------------------
def test_evaluate_task_end_to_end_on_a_belebele_file(llama_dir, tmp_path, capsys):
    d = tmp_path / "texts"
    d.mkdir()
    for lang in ("en", "de", "ja"):
        (d / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:12]))
    run = tmp_path / "run"
    argv = ["identify", "--model", str(llama_dir), "--corpus", str(d), "--langs", "en,de,ja"]
    assert cli.main([*argv, "--out", str(run), "--top-rate", "0.1", "--no-progress"]) == 0
    task_file = _write_jsonl(tmp_path / "belebele_en.jsonl", _belebele_rows(12))
    out = tmp_path / "eval"
    evaluate = ["evaluate", "--neurons", str(run), "--out", str(out), "--no-progress"]
    code = cli.main([*evaluate, "--task", "belebele", "--task-file", str(task_file), "--targets", "de,ja"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "task belebele (en, n=12) acc_norm baseline:" in printed and "add->de" in printed
    results = json.loads((out / "tasks.json").read_text())
    assert (
        results["kind"] == "tasks"
        and results["task_kind"] == "multiple_choice"
        and results["items"] == 12
        and set(results["rows"]) == {"add->de", "add->ja"}
    )
    row = results["rows"]["add->de"]
    acc = row["intervals"]["acc_norm"]
    assert acc["n"] == 12 and acc["low"] <= row["acc_norm"] <= acc["high"]
    assert row["difference"]["acc_norm"]["estimate"] == pytest.approx(row["acc_norm"] - results["baseline"]["acc_norm"])
    text = (out / "metrics.txt").read_text()
    assert text.count("task belebele") == 3 and "[" in text
    # a second run replaces the task's lines, not appends to them
    assert cli.main([*evaluate, "--task", "belebele", "--task-file", str(task_file), "--targets", "de"]) == 0
    assert (out / "metrics.txt").read_text().count("task belebele") == 2
    capsys.readouterr()
    # bad input: one line each, exit code 2
    try:
        code = cli.main([*evaluate, "--task", "mmlu"])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "invalid choice: 'mmlu'" in err and "belebele" in err and err.count("\n") == 1
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "q"}] * 12)
    assert cli.main([*evaluate, "--task", "belebele", "--task-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "which task 'belebele' (multiple choice) needs" in err
    few = _write_jsonl(tmp_path / "few.jsonl", _belebele_rows(4))
    assert cli.main([*evaluate, "--task", "belebele", "--task-file", str(few)]) == 2
    assert "intervals need at least 10 samples" in capsys.readouterr().err
