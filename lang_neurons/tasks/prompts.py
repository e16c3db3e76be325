"""The prompt format of every task: a dataset row (the hub dataset's columns) → a :class:`TaskItem`.

Zero-shot, English wording in every language (the papers' prompts are English templates around
text in the evaluated language). Multiple-choice formats follow lm-evaluation-harness's tasks;
options are scored as continuations, with the leading space shown.

| task | kind | prompt | options / answer |
|---|---|---|---|
| ``belebele`` | multiple choice | ``P: {flores_passage}\\nQ: {question}\\nA: {mc_answer1}\\nB: ...\\nD: {mc_answer4}\\nAnswer:`` | ``" A"`` .. ``" D"``; right: ``correct_answer_num`` (1-4) |
| ``xnli`` | multiple choice | empty (BOS) | ``"{premise}, right? Yes, {hypothesis}"``, ``... Also, ...``, ``... No, ...``; right: ``label`` (0 entailment, 1 neutral, 2 contradiction) |
| ``sib200`` | multiple choice | ``Topic of the text: {text}\\nTopic:`` | ``" science/technology"``, ``" travel"``, ``" politics"``, ``" sports"``, ``" health"``, ``" entertainment"``, ``" geography"``; right: ``category`` |
| ``xquad`` | generation | ``Context: {context}\\n\\nQuestion: {question}\\n\\nAnswer:`` | references: ``answers["text"]`` |
| ``multiple_choice`` | multiple choice | ``prompt`` | ``options`` (a list, as written); right: ``answer`` (0-based) |
| ``generation`` | generation | ``prompt`` | references: ``answers`` (a list or one string) |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lang_neurons.errors import LangNeuronsError

from .base import TaskItem

Row = Mapping[str, Any]

LETTERS = ("A", "B", "C", "D")
XNLI_WORDS = ("Yes", "Also", "No")
"""lm-evaluation-harness's English XNLI connectives for entailment, neutral, contradiction."""

SIB_CATEGORIES: tuple[str, ...] = (
    "science/technology",
    "travel",
    "politics",
    "sports",
    "health",
    "entertainment",
    "geography",
)
"""SIB-200's seven topics, in the order of its label ids."""


def _text(row: Row, column: str) -> str:
    value = row[column]
    if value is None:
        return ""
    return str(value).strip()


def _index(value: Any, n: int, what: str, base: int = 0) -> int:
    try:
        k = int(str(value).strip()) - base
    except ValueError:
        raise LangNeuronsError(f"{what} must be a number, got {value!r}") from None
    if not 0 <= k < n:
        raise LangNeuronsError(f"{what} must be in {base}..{n - 1 + base}, got {value!r}")
    return k


def belebele_item(row: Row) -> TaskItem:
    """A Belebele row: passage, question and four lettered answers; the letter is scored."""
    answers = [_text(row, f"mc_answer{k}") for k in range(1, 5)]
    lines = [f"P: {_text(row, 'flores_passage')}", f"Q: {_text(row, 'question')}"]
    lines += [f"{letter}: {a}" for letter, a in zip(LETTERS, answers)]
    prompt = "\n".join(lines) + "\nAnswer:"
    answer = _index(row["correct_answer_num"], 4, "Belebele's correct_answer_num", base=1)
    ident = f"{row.get('link', '')}#{row.get('question_number', '')}".strip("#")
    return TaskItem(prompt, tuple(f" {letter}" for letter in LETTERS), answer, id=ident)


def xnli_item(row: Row) -> TaskItem:
    """An XNLI row: one whole sentence per label, ``premise, right? Yes|Also|No, hypothesis``."""
    premise, hypothesis = _text(row, "premise"), _text(row, "hypothesis")
    options = tuple(f"{premise}, right? {word}, {hypothesis}" for word in XNLI_WORDS)
    return TaskItem("", options, _index(row["label"], 3, "XNLI's label"), id=str(row.get("id", "")))


def sib200_item(row: Row) -> TaskItem:
    """A SIB-200 row: the sentence, then each topic name scored as its continuation."""
    category = row["category"]
    if isinstance(category, str) and not category.strip().isdigit():
        if category.strip() not in SIB_CATEGORIES:
            raise LangNeuronsError(f"SIB-200's category must be one of {', '.join(SIB_CATEGORIES)}, got {category!r}")
        answer = SIB_CATEGORIES.index(category.strip())
    else:
        answer = _index(category, len(SIB_CATEGORIES), "SIB-200's category id")
    prompt = f"Topic of the text: {_text(row, 'text')}\nTopic:"
    return TaskItem(prompt, tuple(f" {c}" for c in SIB_CATEGORIES), answer, id=str(row.get("index_id", "")))


def _answer_list(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, Mapping):
        value = value.get("text")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(a, str) for a in value):
        raise LangNeuronsError(f"{what} must be a non-empty list of answer strings, got {value!r}")
    return tuple(value)


def xquad_item(row: Row) -> TaskItem:
    """An XQuAD row: context and question; the answer is written, scored against ``answers["text"]``."""
    prompt = f"Context: {_text(row, 'context')}\n\nQuestion: {_text(row, 'question')}\n\nAnswer:"
    answers = _answer_list(row["answers"], "XQuAD's answers")
    return TaskItem(prompt, answers=answers, id=str(row.get("id", "")))


def multiple_choice_item(row: Row) -> TaskItem:
    """A row of your own multiple-choice file: ``prompt``, ``options`` (a list) and ``answer`` (0-based)."""
    options = row["options"]
    if not isinstance(options, (list, tuple)) or not all(isinstance(o, str) for o in options):
        raise LangNeuronsError(f"the options column must hold lists of strings, got {options!r}")
    answer = _index(row["answer"], len(options), "the answer column")
    return TaskItem(str(row["prompt"] or ""), tuple(options), answer, id=str(row.get("id", "")))


def generation_item(row: Row) -> TaskItem:
    """A row of your own generation file: ``prompt`` and ``answers`` (a list, or one string)."""
    return TaskItem(
        str(row["prompt"] or ""), answers=_answer_list(row["answers"], "the answers column"), id=str(row.get("id", ""))
    )


ITEM_BUILDERS: dict[str, Callable[[Row], TaskItem]] = {
    "belebele": belebele_item,
    "xnli": xnli_item,
    "sib200": sib200_item,
    "xquad": xquad_item,
    "multiple_choice": multiple_choice_item,
    "generation": generation_item,
}
"""Each task's row → item function."""
