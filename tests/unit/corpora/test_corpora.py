"""Tests for lang_neurons.languages and lang_neurons.corpora (offline, fast)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from lang_neurons.corpora import (
    DEFAULT_LANGS,
    CorpusError,
    LanguageCorpus,
    MissingLanguageError,
    catalogues,
    default_corpus_languages,
    hub,
    load_corpus,
    load_default_corpus,
    load_text_files,
    split_paragraphs,
)
from lang_neurons.languages import (
    FLORES_CODES,
    ISO_CODES,
    UnknownLanguageError,
    language_name,
    parse_langs,
    same_language,
    to_flores,
    to_iso,
    validate_lang,
)

# --------------------------------------------------------------------------- languages


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("de", "de"),
        (" DE ", "de"),
        ("zh", "zh"),
        ("deu_Latn", "deu_Latn"),
        ("deu_latn", "deu_Latn"),
        ("ZHO_HANT", "zho_Hant"),
        ("jpn_Jpan", "jpn_Jpan"),
        ("cmn_Hans", "cmn_Hans"),
    ],
)
def test_validate_lang_accepts_and_normalises(code, expected):
    assert validate_lang(code) == expected


@pytest.mark.parametrize(
    ("bad", "suggestion"),
    [
        ("german", "de"),
        ("Chinese", "zh"),
        ("deu", "deu_Latn"),
        ("jp", "ja"),
        ("ger", "de"),
        ("zh-TW", "zho_Hant"),
        ("pt_BR", "pt"),
        ("frnch", "fr"),
    ],
)
def test_validate_lang_suggests(bad, suggestion):
    with pytest.raises(UnknownLanguageError) as info:
        validate_lang(bad)
    message = str(info.value)
    assert f"unknown language code {bad!r}" in message
    assert "ISO 639-1" in message and "'deu_Latn'" in message
    assert f"did you mean {suggestion!r}?" in message


def test_unknown_language_error_is_value_error():
    assert issubclass(UnknownLanguageError, ValueError)
    for bad in ("xx", "", "qqq_Zzzz"):
        with pytest.raises(ValueError):
            validate_lang(bad)
    with pytest.raises(UnknownLanguageError, match="must be a string"):
        validate_lang(3)  # type: ignore[arg-type]


def test_language_table_and_conversions():
    assert len(ISO_CODES) >= 100 and len(FLORES_CODES) >= 200
    assert to_iso("zho_Hans") == "zh" and to_iso("zho_Hant") == "zh" and to_iso("cmn_Hans") == "zh"
    assert to_iso("deu_Latn") == "de" and to_iso("de") == "de"
    assert to_flores("zh") == "zho_Hans" and to_flores("ja") == "jpn_Jpan" and to_flores("ar") == "arb_Arab"
    assert to_flores("deu_Latn") == "deu_Latn"
    assert language_name("de") == "German" and language_name("jpn_Jpan") == "Japanese"
    assert same_language("de", "deu_Latn") and not same_language("zh", "zho_Hant")
    with pytest.raises(UnknownLanguageError, match="no ISO 639-1 code"):
        to_iso("ast_Latn")
    with pytest.raises(UnknownLanguageError, match="not a FLORES-200 language"):
        to_flores("br")


def test_parse_langs():
    assert parse_langs("en,de,fr") == ["en", "de", "fr"]
    assert parse_langs(" en, DE  zho_hant ") == ["en", "de", "zho_Hant"]
    assert parse_langs(["en", "deu_Latn"]) == ["en", "deu_Latn"]
    with pytest.raises(ValueError, match="duplicate language.*'en' twice"):
        parse_langs("en,de,en")
    with pytest.raises(ValueError, match="'de' and 'deu_Latn' \\(the same language\\)"):
        parse_langs(["de", "deu_Latn"])
    with pytest.raises(ValueError, match="no languages given"):
        parse_langs(" , ")
    with pytest.raises(UnknownLanguageError, match="did you mean 'fr'"):
        parse_langs("en,french")


# --------------------------------------------------------------------------- LanguageCorpus


def _corpus(n: int = 10, aligned: bool = True) -> LanguageCorpus:
    return LanguageCorpus(
        {
            "en": [f"english {i}" for i in range(n)],
            "de": [f"deutsch {i}" for i in range(n)],
            "ja": [f"日本語 {i}" for i in range(n)],
        },
        name="toy",
        aligned=aligned,
    )


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        ({"xx": ["a"]}, "unknown language code 'xx'"),
        ({"en": []}, "'en' has no texts"),
        ({"en": "hello"}, "must be a list of strings.*wrap a single text"),
        ({"en": ["ok", 3]}, "text 1 of 'en' is a int"),
        ({"en": ["ok", "  "]}, "text 1 of 'en' is blank"),
        ({}, "has no languages"),
        ({"de": ["a"], "deu_Latn": ["b"]}, "same language twice"),
        (["en"], "must be a dict"),
    ],
)
def test_corpus_validation(texts, match):
    with pytest.raises(ValueError, match=match):
        LanguageCorpus(texts, name="bad")


def test_corpus_access_and_repr():
    corpus = LanguageCorpus({" DE ": ["a", "b"], "eng_Latn": ["x"]}, name="mixed")
    assert corpus.langs == ["de", "eng_Latn"]
    assert len(corpus) == 3
    assert corpus["deu_Latn"] == ["a", "b"] and corpus["en"] == ["x"]
    assert "de" in corpus and "fr" not in corpus and "nonsense" not in corpus
    assert list(corpus) == ["de", "eng_Latn"]
    assert not corpus.is_parallel
    with pytest.raises(MissingLanguageError, match="has no language 'fr': it holds de, eng_Latn") as info:
        corpus["fr"]
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    text = repr(_corpus(4))
    assert "'toy'" in text and "3 languages" in text and "en: 4" in text and "parallel=True" in text
    summary = _corpus(4).summary()
    assert "German" in summary and "mean chars" in summary and len(summary.splitlines()) == 5


def test_split_is_deterministic_parallel_and_sized():
    corpus = _corpus(10)
    train, held = corpus.split(held_out=0.3, seed=1)
    again_train, again_held = corpus.split(held_out=0.3, seed=1)
    assert held.texts == again_held.texts and train.texts == again_train.texts
    assert all(len(held[lang]) == 3 and len(train[lang]) == 7 for lang in corpus)
    # Same item indices held out in every language: the corpus stays parallel.
    idx = [int(t.split()[-1]) for t in held["en"]]
    assert all([int(t.split()[-1]) for t in held[lang]] == idx for lang in corpus)
    assert held.is_parallel and train.is_parallel
    assert set(held["en"]).isdisjoint(train["en"]) and sorted(held["en"] + train["en"]) == sorted(corpus["en"])
    assert corpus.split(0.3, seed=2)[1]["en"] != held["en"] or corpus.split(0.3, seed=3)[1]["en"] != held["en"]
    assert held.name == "toy/held_out" and train.name == "toy/train"


def test_split_edges():
    tiny = LanguageCorpus({"en": ["a", "b"], "de": ["c", "d", "e"]}, name="tiny")
    train, held = tiny.split(held_out=0.01)
    assert all(len(held[lang]) == 1 and len(train[lang]) >= 1 for lang in tiny)
    train, held = tiny.split(held_out=0.99)
    assert all(len(train[lang]) == 1 for lang in tiny)
    with pytest.raises(ValueError, match="'fr' has 1 text, need at least 2"):
        LanguageCorpus({"en": ["a", "b"], "fr": ["c"]}, name="x").split()
    for bad in (0, 1, 1.5, -0.1, True):
        with pytest.raises(ValueError, match="held_out must be a fraction"):
            tiny.split(held_out=bad)
    # Not parallel: languages are split independently but still deterministically.
    loose = _corpus(10, aligned=False)
    assert loose.split(seed=5)[1].texts == loose.split(seed=5)[1].texts


def test_take_and_subset():
    corpus = _corpus(10)
    small = corpus.take(4, seed=0)
    assert all(len(small[lang]) == 4 for lang in small) and small.is_parallel
    idx = [int(t.split()[-1]) for t in small["en"]]
    assert idx == sorted(idx) and all([int(t.split()[-1]) for t in small[lang]] == idx for lang in small)
    assert small.texts == corpus.take(4, seed=0).texts
    assert corpus.take(100).texts == corpus.texts
    with pytest.raises(ValueError, match="positive integer"):
        corpus.take(0)
    sub = corpus.subset("ja,en")
    assert sub.langs == ["ja", "en"] and sub.is_parallel and sub["en"] == corpus["en"]
    assert corpus.subset(["deu_Latn"]).langs == ["de"]
    with pytest.raises(MissingLanguageError, match="has no language 'fr'"):
        corpus.subset(["fr"])


def test_to_dict_round_trip():
    corpus = _corpus(3)
    corpus.description = "toy corpus"
    back = LanguageCorpus.from_dict(json.loads(json.dumps(corpus.to_dict(), ensure_ascii=False)))
    assert back == corpus and back.is_parallel and back.description == "toy corpus"
    with pytest.raises(ValueError, match="missing key\\(s\\) 'texts'"):
        LanguageCorpus.from_dict({"name": "x"})


# --------------------------------------------------------------------------- default corpus


def _have(*packages: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in packages)


def test_default_corpus_six_languages_parallel():
    corpus = load_corpus()
    assert corpus.langs == list(DEFAULT_LANGS) == ["en", "de", "fr", "es", "zh", "ja"]
    assert corpus.is_parallel
    sizes = {len(corpus[lang]) for lang in corpus}
    assert len(sizes) == 1
    n = sizes.pop()
    assert n >= 250  # Django alone
    if _have("allauth", "rest_framework"):
        assert n >= 550
    for lang in corpus:
        texts = corpus[lang]
        assert len(set(texts)) == len(texts)
        assert not any("%(" in t or "<" in t or "{" in t or "  " in t for t in texts)
    assert all(len(t.split()) >= 3 for t in corpus["en"])
    i = corpus["en"].index("This field is required.")
    assert corpus["fr"][i] == "Ce champ est obligatoire."
    assert "Feld" in corpus["de"][i] and "必須" in corpus["ja"][i] and "必填" in corpus["zh"][i]
    assert "Django" in corpus.description and "BSD-3-Clause" in corpus.description


def test_default_corpus_is_cached_and_fast():
    catalogues._catalogue_rows.cache_clear()
    start = time.perf_counter()
    load_default_corpus(["en", "de", "fr", "es", "zh", "ja"])
    assert time.perf_counter() - start < 3.0
    start = time.perf_counter()
    first = load_default_corpus()
    second = load_default_corpus()
    assert time.perf_counter() - start < 0.5
    first["en"].append("mutating one corpus must not change the cache")
    assert second["en"] != first["en"] and load_default_corpus()["en"] == second["en"]


def test_default_corpus_other_languages_and_sources():
    corpus = load_corpus("default", langs=["deu_Latn", "pt", "zho_Hant", "ru"], max_per_lang=50)
    assert corpus.langs == ["deu_Latn", "pt", "zho_Hant", "ru"] and corpus.is_parallel
    assert all(len(corpus[lang]) == 50 for lang in corpus)
    django_only = load_default_corpus(["en", "de"], sources=["django"])
    assert len(django_only["en"]) >= 250 and "Django" in django_only.description
    assert len(load_default_corpus(["en"])["en"]) >= 250
    assert {"en", "de", "zh", "zho_Hant", "ja", "pt"} <= set(default_corpus_languages())
    with pytest.raises(MissingLanguageError, match="default corpus has no 'yo' \\(Yoruba\\): it offers en, af"):
        load_corpus("default", langs=["en", "yo"])
    with pytest.raises(UnknownLanguageError, match="did you mean 'de'"):
        load_corpus("default", langs=["en", "german"])
    with pytest.raises(ValueError, match="unknown catalogue source"):
        load_default_corpus(sources=["sphinx"])


def test_load_corpus_dispatch_errors():
    with pytest.raises(ValueError, match="unknown corpus 'nope': use one of 'default', 'flores'"):
        load_corpus("nope")
    with pytest.raises(ValueError, match="got unexpected option\\(s\\) 'token'"):
        load_corpus("default", token="abc")
    with pytest.raises(ValueError, match="max_per_lang must be a positive integer"):
        load_corpus("default", max_per_lang=0)


# --------------------------------------------------------------------------- text files


def test_text_files(tmp_path):
    (tmp_path / "en.txt").write_text("Hello there.\n\nHello there.\nSecond line.\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("Hallo.\n  \nZweite Zeile.\n", encoding="utf-8")
    (tmp_path / "zho_Hans.txt").write_text("你好。\n", encoding="utf-8")
    corpus = load_text_files(tmp_path)
    assert corpus.langs == ["de", "en", "zho_Hans"]  # file-name order
    assert corpus["en"] == ["Hello there.", "Second line."]  # blank and repeated lines dropped
    assert corpus["zh"] == ["你好。"]
    assert not corpus.is_parallel
    assert load_corpus(str(tmp_path), langs="en,de").langs == ["en", "de"]
    assert all(len(texts) == 1 for texts in load_corpus(tmp_path, max_per_lang=1).texts.values())
    with pytest.raises(MissingLanguageError, match="no file for 'fr'.*add fr.txt"):
        load_text_files(tmp_path, ["fr"])
    (tmp_path / "german.txt").write_text("x\n", encoding="utf-8")
    with pytest.raises(UnknownLanguageError, match="'german.txt'.*rename it"):
        load_text_files(tmp_path)
    with pytest.raises(CorpusError, match="does not exist"):
        load_text_files(tmp_path / "missing")


def test_text_files_parallel(tmp_path):
    (tmp_path / "en.txt").write_text("one\ntwo\n\nfour\none\n", encoding="utf-8")
    (tmp_path / "fr.txt").write_text("un\ndeux\ntrois\nquatre\nun bis\n", encoding="utf-8")
    corpus = load_corpus(tmp_path, parallel=True)
    assert corpus.is_parallel
    assert corpus["en"] == ["one", "two", "four"] and corpus["fr"] == ["un", "deux", "quatre"]
    (tmp_path / "fr.txt").write_text("un\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="same number of lines"):
        load_text_files(tmp_path, parallel=True)


def test_split_paragraphs():
    doc = (
        "Title\n\n"
        + "A first paragraph that is long enough to keep. " * 2
        + "\nshort\n"
        + "Sentence one is here. " * 100
    )
    parts = split_paragraphs(doc, min_chars=40, max_chars=300)
    assert parts[0].startswith("A first paragraph") and "Title" not in parts and "short" not in parts
    assert all(len(p) <= 300 for p in parts) and len(parts) > 3
    assert split_paragraphs("这是一个很长的中文句子。" * 100, min_chars=10, max_chars=100)[0].endswith("。")


# --------------------------------------------------------------------------- Hugging Face loaders


def _hub_folder(root: Path, configs: dict[str, dict[str, list[dict]]]) -> Path:
    """Write a local dataset laid out like a hub repository: one folder per config,
    one JSON-lines file per split, and the README ``configs:`` metadata."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            path = root / config / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            lines += [f"  - split: {split}", f"    path: {config}/{split}.jsonl"]
    (root / "README.md").write_text("\n".join(lines + ["---", ""]), encoding="utf-8")
    return root


def test_flores_loader_on_local_copy(tmp_path):
    words = {"eng_Latn": "sentence", "deu_Latn": "Satz", "cmn_Hans": "句子"}
    configs = {
        code: {split: [{"id": i, "text": f"{w} {split} {i}"} for i in order] for split in ("dev", "devtest")}
        for code, w in words.items()
        for order in [[3, 1, 2, 0] if code == "deu_Latn" else [0, 1, 2, 3]]
    }
    configs["deu_Latn"]["dev"].append({"id": 9, "text": "nur deutsch"})  # no partner: dropped
    path = _hub_folder(tmp_path / "flores", configs)
    corpus = load_corpus("flores", langs=["en", "de", "zh"], dataset_path=path, cache_dir=tmp_path / "cache")
    assert corpus.is_parallel and corpus.name == "flores"
    assert corpus["en"] == [f"sentence dev {i}" for i in range(4)]
    assert corpus["de"] == [f"Satz dev {i}" for i in range(4)]  # aligned by id, not by row order
    assert corpus["zh"][2] == "句子 dev 2"  # zh -> zho_Hans -> FLORES+ config cmn_Hans
    test = load_corpus("flores", langs="de", split="devtest", dataset_path=path, cache_dir=tmp_path / "cache")
    assert test["de"][0] == "Satz devtest 0"
    with pytest.raises(MissingLanguageError, match="FLORES\\+ has no 'fr'.*fra_Latn"):
        load_corpus("flores", langs=["en", "fr"], dataset_path=path, cache_dir=tmp_path / "cache")
    with pytest.raises(MissingLanguageError, match="FLORES\\+ has no 'br'"):
        load_corpus("flores", langs=["br"], dataset_path=path)
    with pytest.raises(CorpusError, match="dataset_path .* does not exist"):
        load_corpus("flores", langs=["en"], dataset_path=tmp_path / "no-such-folder")
    with pytest.raises(ValueError, match="no split 'test'"):
        load_corpus("flores", langs=["en"], split="test", dataset_path=path, cache_dir=tmp_path / "cache")


def test_paws_x_loader_on_local_copy(tmp_path):
    rows = {
        "en": ["The cat sat.", "The cat sat.", "A dog ran.", "Birds fly."],
        "de": ["Die Katze saß.", "Die Katze saß.", "Ein Hund lief.", ""],
    }
    configs = {
        lang: {"test": [{"id": i + 1, "sentence1": s, "sentence2": "x", "label": 1} for i, s in enumerate(texts)]}
        for lang, texts in rows.items()
    }
    path = _hub_folder(tmp_path / "paws", configs)
    corpus = load_corpus("paws-x", langs="en,de", dataset_path=path, cache_dir=tmp_path / "cache")
    # Repeated and untranslated (blank) rows are dropped in both languages.
    assert corpus["en"] == ["The cat sat.", "A dog ran."] and corpus["de"] == ["Die Katze saß.", "Ein Hund lief."]
    assert corpus.is_parallel
    with pytest.raises(MissingLanguageError, match="PAWS-X has no 'it'.*en, de, es, fr, ja, ko, zh"):
        load_corpus("paws-x", langs=["it"], dataset_path=path)


def test_wikipedia_and_culturax_loaders_on_local_copy(tmp_path):
    para = "This paragraph is long enough to be kept as one text of the corpus."
    docs = {
        "en": [
            {"id": "1", "title": "A", "text": f"Heading\n{para}\n\n{para} Again.\n{para}"},
            {"id": "2", "title": "B", "text": f"{para} Two."},
        ],
        "de": [{"id": "1", "title": "A", "text": "Dieser Absatz ist lang genug, um behalten zu werden, ja."}],
        "zh": [{"id": "1", "title": "A", "text": "这是一个足够长的中文段落，应该被保留下来。"}],
    }
    wiki = _hub_folder(tmp_path / "wiki", {f"20231101.{lang}": {"train": d} for lang, d in docs.items()})
    corpus = load_corpus("wikipedia", langs=["en", "de", "zh"], dataset_path=wiki)
    assert corpus["en"] == [para, f"{para} Again.", f"{para} Two."]  # heading dropped, repeat dropped
    assert corpus["de"] == [docs["de"][0]["text"]] and corpus["zh"] == [docs["zh"][0]["text"]]
    assert not corpus.is_parallel
    assert load_corpus("wikipedia", langs=["en"], max_per_lang=2, dataset_path=wiki)["en"] == [para, f"{para} Again."]
    cx = _hub_folder(tmp_path / "cx", {lang: {"train": d} for lang, d in docs.items()})
    assert load_corpus("culturax", langs="de", dataset_path=cx)["de"] == corpus["de"]
    with pytest.raises(MissingLanguageError, match="CulturaX has no 'fr'"):
        load_corpus("culturax", langs="fr", dataset_path=cx)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("flores", "log in with a token (load_corpus('flores', token=...))"),
        ("paws-x", "check your internet connection"),
        ("wikipedia", "check your internet connection"),
        ("culturax", "load_corpus('culturax', token=...)"),
    ],
)
def test_hub_offline_is_a_clear_corpus_error(monkeypatch, tmp_path, name, needle):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(CorpusError) as info:
        load_corpus(name, langs=["de"], **({"cache_dir": tmp_path} if name in ("flores", "paws-x") else {}))
    assert time.perf_counter() - start < 15
    message = str(info.value)
    assert "from the Hugging Face hub" in message and needle in message
    assert "load_corpus('default')" in message
    if name == "flores":
        assert message.startswith("could not load FLORES+ from the Hugging Face hub (offline or gated)")


@pytest.fixture
def hub_libraries_online(monkeypatch):
    """Make datasets/huggingface_hub believe they are online (they read HF_HUB_OFFLINE at import)."""
    import datasets.config
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return datasets.config, constants


def test_offline_env_set_after_import_is_respected(monkeypatch, tmp_path, hub_libraries_online):
    config, constants = hub_libraries_online
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(CorpusError, match="only the local cache was tried"):
        load_corpus("flores", langs=["de"], cache_dir=tmp_path)
    assert time.perf_counter() - start < 15
    assert config.HF_HUB_OFFLINE is False and constants.HF_HUB_OFFLINE is False  # restored


def test_unreachable_hub_fails_fast(monkeypatch, tmp_path, hub_libraries_online):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "_hub_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(CorpusError, match="could not load PAWS-X from the Hugging Face hub"):
        load_corpus("paws-x", langs=["de"], cache_dir=tmp_path)
    assert time.perf_counter() - start < 15
