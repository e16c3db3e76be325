"""Property-based tests (hypothesis) of the scoring functions: random shapes, ties, all-zero
neurons, languages with one sentence, NaN/inf inputs. AP is compared with scikit-learn's
``average_precision_score``. Examples are few so the suite stays fast."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from sklearn.metrics import average_precision_score

import lang_neurons as ln
from lang_neurons import scoring

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@hs.composite
def pooled_inputs(draw, values=hs.integers(-2, 2)):
    """(pooled [sentence, layer, neuron], labels, n_langs): small integer-valued floats, so ties
    are common; some languages have a single sentence."""
    n_langs = draw(hs.integers(2, 4))
    per_lang = draw(hs.lists(hs.integers(1, 5), min_size=n_langs, max_size=n_langs))
    n_layers, width = draw(hs.integers(1, 3)), draw(hs.integers(1, 4))
    labels = torch.tensor([lang for lang, n in enumerate(per_lang) for _ in range(n)])
    labels = labels[torch.tensor(draw(hs.permutations(range(len(labels)))))]
    flat = draw(hs.lists(values, min_size=len(labels) * n_layers * width, max_size=len(labels) * n_layers * width))
    pooled = torch.tensor(flat, dtype=torch.float32).reshape(len(labels), n_layers, width)
    return pooled, labels, n_langs


@FAST
@given(pooled_inputs())
def test_ap_equals_sklearn(inputs):
    pooled, labels, n_langs = inputs
    ap = scoring.ap_scores(pooled, labels, n_langs)
    assert ap.shape == (n_langs, *pooled.shape[1:])
    for lang in range(n_langs):
        for layer in range(pooled.shape[1]):
            for k in range(pooled.shape[2]):
                want = average_precision_score((labels == lang).numpy(), pooled[:, layer, k].numpy())
                assert abs(float(ap[lang, layer, k]) - want) <= 1e-6


@FAST
@given(pooled_inputs(values=hs.floats(-3, 3, width=32)), hs.data())
def test_ap_ranges_and_top_bottom_k(inputs, data):
    pooled, labels, n_langs = inputs
    ap = scoring.ap_scores(pooled, labels, n_langs)
    assert torch.isfinite(ap).all() and (ap >= 0).all() and (ap <= 1 + 1e-6).all()
    n = ap[0].numel()
    top_k = data.draw(hs.integers(0, n))
    bottom_k = data.draw(hs.integers(0, n - top_k))
    top, bottom = scoring.top_bottom_k(ap, top_k, bottom_k)
    assert top.sum((1, 2)).tolist() == [top_k] * n_langs and bottom.sum((1, 2)).tolist() == [bottom_k] * n_langs
    for lang in range(n_langs):
        s, t, b = ap[lang].flatten(), top[lang].flatten(), bottom[lang].flatten()
        if top_k and top_k < n:
            assert s[t].min() >= s[~t].max()
        if bottom_k and bottom_k < n:
            assert s[b].max() <= s[~b].min()


@hs.composite
def counts(draw):
    """(active [lang, layer, neuron], tokens [lang]) with all-zero neurons and ties likely."""
    n_langs, n_layers, width = draw(hs.integers(2, 4)), draw(hs.integers(1, 3)), draw(hs.integers(1, 8))
    tokens = torch.tensor(draw(hs.lists(hs.integers(1, 30), min_size=n_langs, max_size=n_langs)))
    active = torch.zeros(n_langs, n_layers, width, dtype=torch.long)
    for lang in range(n_langs):
        values = draw(
            hs.lists(
                hs.sampled_from([0, 0, 1, int(tokens[lang]) // 2, int(tokens[lang])]),
                min_size=n_layers * width,
                max_size=n_layers * width,
            )
        )
        active[lang] = torch.tensor(values).reshape(n_layers, width)
    return active, tokens


@FAST
@given(counts(), hs.sampled_from([0.01, 0.1, 0.3, 1.0]), hs.sampled_from([0.5, 0.9, 0.95]))
def test_lape_properties(c, top_rate, bar_ratio):
    active, tokens = c
    prob = scoring.activation_probability(active, tokens)
    assert ((prob >= 0) & (prob <= 1)).all()
    mask, entropy = scoring.lape_select(prob, top_rate=top_rate, activation_bar_ratio=bar_ratio)
    n_langs = prob.shape[0]
    assert mask.shape == prob.shape and entropy.shape == prob.shape[1:]
    assert (entropy >= -1e-6).all() and (entropy <= math.log(n_langs) + 1e-5).all()
    never = (active == 0).all(0)
    assert not mask[:, never].any()  # a neuron that never fires belongs to no language
    assert (entropy[never] == 0).all()  # documented: the reference code's entropy 0
    kept = mask.any(0)
    assert int(kept.sum()) <= round(prob[0].numel() * top_rate)
    bar = scoring._kth_quantile(prob, bar_ratio)
    assert (prob[mask] > bar).all()  # every member language is above the activation bar
    again, _ = scoring.lape_select(prob, top_rate=top_rate, activation_bar_ratio=bar_ratio)
    assert torch.equal(mask, again)  # deterministic
    perm = torch.randperm(n_langs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(scoring.lape_entropy(prob[perm]), entropy, rtol=1e-5, atol=1e-6)


@FAST
@given(counts(), hs.sampled_from([math.nan, math.inf, -math.inf, -0.5, 1.5]), hs.data())
def test_lape_rejects_bad_probabilities(c, bad, data):
    active, tokens = c
    prob = scoring.activation_probability(active, tokens)
    layer = data.draw(hs.integers(0, prob.shape[1] - 1))
    prob[0, layer, 0] = bad
    with pytest.raises(
        ln.LangNeuronsError, match=f"layer {layer}: 1" if not -1 < bad < 2 or math.isnan(bad) else "in \\[0, 1\\]"
    ):
        scoring.lape_select(prob)


@FAST
@given(pooled_inputs(values=hs.floats(-3, 3, width=32)), hs.sampled_from([math.nan, math.inf, -math.inf]), hs.data())
def test_ap_reports_non_finite_by_layer(inputs, bad, data):
    pooled, labels, n_langs = inputs
    layers = sorted(set(data.draw(hs.lists(hs.integers(0, pooled.shape[1] - 1), min_size=1, max_size=3))))
    for layer in layers:
        pooled[data.draw(hs.integers(0, len(labels) - 1)), layer, 0] = bad
    with pytest.raises(ln.LangNeuronsError, match="non-finite") as err:
        scoring.ap_scores(pooled, labels, n_langs)
    reported = {
        int(part.split()[1].rstrip(":"))
        for part in str(err.value).split(" in ", 1)[1].split(", ")
        if part.startswith("layer")
    }
    assert reported == set(layers)


def test_scoring_rejects_bad_shapes_and_labels():
    pooled, labels = torch.zeros(4, 2, 3), torch.tensor([0, 0, 1, 1])
    cases = [
        (lambda: scoring.ap_scores(pooled[0], labels, 2), "must be \\[sentence, layer, neuron\\]"),
        (lambda: scoring.ap_scores(pooled, labels.float(), 2), "1-D integer tensor"),
        (lambda: scoring.ap_scores(pooled, labels[:3], 2), "4 pooled rows but 3 labels"),
        (lambda: scoring.ap_scores(pooled, labels, 1), "at least two languages"),
        (lambda: scoring.ap_scores(pooled, torch.tensor([0, 0, 1, 5]), 2), "must be in \\[0, 2\\)"),
        (lambda: scoring.ap_scores(pooled, torch.tensor([0, 0, -1, 1]), 2), "must be in \\[0, 2\\)"),
        (lambda: scoring.ap_scores(pooled, torch.tensor([0, 0, 0, 0]), 2), "every language"),
        (lambda: scoring.ap_scores(torch.zeros(0, 2, 3), torch.zeros(0, dtype=torch.long), 2), "every language"),
        (
            lambda: scoring.activation_probability(torch.ones(2, 2, 2, dtype=torch.long), torch.tensor([1, 0])),
            "at least one token",
        ),
        (lambda: scoring.activation_probability(torch.full((2, 2, 2), 5), torch.tensor([4, 9])), "between 0 and"),
        (lambda: scoring.activation_probability(torch.ones(2, 2, 2), torch.tensor([4])), "need active"),
        (lambda: scoring.activation_probability(torch.full((2, 1, 1), math.nan), torch.tensor([4, 4])), "NaN/inf"),
        (lambda: scoring.lape_select(torch.rand(1, 2, 3)), "lang>=2"),
        (lambda: scoring.lape_select(torch.rand(2, 0, 3)), "lang>=2"),
        (lambda: scoring.lape_select(torch.rand(2, 2, 3), top_rate=math.nan), "top_rate"),
        (lambda: scoring.lape_select(torch.rand(2, 2, 3), filter_rate=0), "filter_rate"),
        (lambda: scoring.top_bottom_k(torch.rand(2, 2, 3), 2.5, 0), "whole number"),
        (lambda: scoring.top_bottom_k(torch.rand(2, 2, 3), 4, 3), "exceeds the 6 neurons"),
        (lambda: scoring.top_bottom_k(torch.full((2, 2, 3), math.nan), 1, 1), "non-finite"),
    ]
    for call, message in cases:
        with pytest.raises(ln.LangNeuronsError, match=message):
            call()


# -- CLI arguments ---------------------------------------------------------------------------------

CLI = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
WORDS = hs.text(alphabet="abcxyz.%_", min_size=1, max_size=6)  # never a number


def _is_code(text: str) -> bool:
    try:
        ln.languages.validate_lang(text)
        return True
    except ln.LangNeuronsError:
        return False


def _one_line_exit_2(argv, capsys, out) -> str:
    from lang_neurons import cli

    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, (argv, err)
    assert len(lines) == 1 and lines[0].startswith("lang-neurons") and "error" in lines[0], err
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
    return lines[0]


def _identify(tmp_path, *extra):
    return [
        "identify",
        "--model",
        str(tmp_path / "no-model-needed"),
        "--corpus",
        str(tmp_path),
        "--langs",
        "en,de",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        *extra,
    ]


BAD_NUMBERS = {
    "--batch-size": hs.one_of(hs.integers(max_value=0), WORDS, hs.just("1.5")),
    "--max-length": hs.one_of(hs.integers(max_value=0), WORDS),
    "--max-per-lang": hs.one_of(hs.integers(max_value=0), WORDS),
    "--ap-sentences": hs.one_of(hs.integers(max_value=0), WORDS),
    "--held-out": hs.one_of(
        hs.floats(min_value=1.0), hs.floats(max_value=-1e-9), hs.sampled_from(["nan", "inf", "-inf"]), WORDS
    ),
    "--top-rate": hs.one_of(
        hs.floats(min_value=1.0, exclude_min=True), hs.floats(max_value=0.0), hs.sampled_from(["nan", "inf"]), WORDS
    ),
    "--filter-rate": hs.one_of(hs.floats(max_value=0.0), hs.sampled_from(["nan", "-inf"]), WORDS),
    "--activation-bar": hs.one_of(hs.floats(min_value=1.0, exclude_min=True), WORDS),
    "--seed": hs.one_of(hs.integers(max_value=-1), hs.integers(min_value=2**32), WORDS),
}


@CLI
@given(hs.sampled_from(sorted(BAD_NUMBERS)), hs.data())
def test_cli_bad_numbers_get_one_line(tmp_path, capsys, flag, data):
    value = data.draw(BAD_NUMBERS[flag])
    line = _one_line_exit_2(_identify(tmp_path, f"{flag}={value}"), capsys, tmp_path / "out")
    assert flag in line


@CLI
@given(hs.lists(hs.from_regex(r"[a-z]{2,3}", fullmatch=True), min_size=1, max_size=3), hs.data())
def test_cli_bad_language_lists_get_one_line(tmp_path, capsys, codes, data):
    codes = codes + [data.draw(hs.from_regex(r"[a-z]{2,3}", fullmatch=True).filter(lambda c: not _is_code(c)))]
    codes = data.draw(hs.permutations(codes))
    line = _one_line_exit_2(_identify(tmp_path, "--langs", ",".join(codes)), capsys, tmp_path / "out")
    assert "unknown language code" in line
    dup = data.draw(hs.sampled_from(["de,de", "en,de,en", "de,deu_Latn", "", " , "]))
    line = _one_line_exit_2(_identify(tmp_path, f"--langs={dup}"), capsys, tmp_path / "out")
    assert "duplicate language" in line or "no languages" in line


@CLI
@given(
    hs.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=10),
    hs.sampled_from(["method", "site", "steer", "evaluate"]),
)
def test_cli_bad_method_and_site_names_get_one_line(tmp_path, capsys, name, where):
    from lang_neurons import steering as st

    if where in ("method", "site"):
        if name in ("lape", "ap", "act", "post", "pre", "gate_up"):
            return
        _one_line_exit_2(_identify(tmp_path, f"--{where}={name}"), capsys, tmp_path / "out")
    elif name not in st.METHODS:
        if where == "steer":
            argv = ["steer", "--neurons", str(tmp_path / "none"), "--target", "de", f"--method={name}"]
        else:
            argv = [
                "evaluate",
                "--neurons",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "out"),
                f"--methods=add,{name}",
            ]
        assert "unknown method" in _one_line_exit_2(argv, capsys, tmp_path / "out")


@CLI
@given(hs.sampled_from(["--alpha", "--seed", "--target", "--samples", "--max-new-tokens"]), hs.data())
def test_cli_bad_steer_values_get_one_line(tmp_path, capsys, flag, data):
    values = {
        "--alpha": hs.sampled_from(["nan", "inf", "-inf", "1e400", "x"]),
        "--seed": hs.one_of(hs.integers(max_value=-1), hs.integers(min_value=2**32)),
        "--target": hs.from_regex(r"[a-z]{2,3}", fullmatch=True).filter(lambda c: not _is_code(c)),
        "--samples": hs.integers(max_value=0),
        "--max-new-tokens": hs.integers(max_value=0),
    }
    argv = ["steer", "--neurons", str(tmp_path / "none"), "--target", "de", f"{flag}={data.draw(values[flag])}"]
    assert flag in _one_line_exit_2(argv, capsys, tmp_path / "out")
