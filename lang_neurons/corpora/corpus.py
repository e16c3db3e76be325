"""The :class:`LanguageCorpus` container, its validation, and the errors of the corpus loaders."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..choices import DEFAULT_LANGS  # noqa: F401  (re-exported: corpora, catalogues, hub_corpora import it from here)
from ..errors import LangNeuronsError
from ..languages import UnknownLanguageError, language_name, parse_langs, same_language, validate_lang


class CorpusError(LangNeuronsError, RuntimeError):
    """A corpus could not be loaded (offline, gated, missing files, bad data)."""


class MissingLanguageError(KeyError, LangNeuronsError):
    """A valid language code that a corpus or source does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def show_langs(langs: Iterable[str], limit: int = 12) -> str:
    """``"de, en, fr"``: at most ``limit`` codes, then how many there are in all."""
    langs = list(langs)
    shown = ", ".join(langs[:limit])
    return shown + (f", ... ({len(langs)} in all)" if len(langs) > limit else "")


@dataclass(repr=False)
class LanguageCorpus:
    """Texts grouped by language.

    Attributes:
        texts: language code -> list of texts; insertion order is language order.
        name: short name of the corpus (``"default"``, ``"flores"``, ...).
        description: where the texts come from, licence, etc.
        aligned: True if the source is parallel (item ``i`` of every language is a
            translation of the same sentence).  See :attr:`is_parallel`.
    """

    texts: dict[str, list[str]]
    name: str
    description: str = ""
    aligned: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise LangNeuronsError(f"corpus name must be a string, got {type(self.name).__name__}")
        if not isinstance(self.description, str):
            raise LangNeuronsError(
                f"corpus {self.name!r}: description must be a string, got {type(self.description).__name__}"
            )
        if not isinstance(self.texts, Mapping):
            raise LangNeuronsError(
                f"corpus {self.name!r}: texts must be a dict of language code -> list of texts, "
                f"got {type(self.texts).__name__}"
            )
        if not self.texts:
            raise LangNeuronsError(f"corpus {self.name!r} has no languages: give at least one language with texts")
        clean: dict[str, list[str]] = {}
        for code, texts in self.texts.items():
            lang = validate_lang(code)
            for other in clean:
                if same_language(other, lang):
                    raise LangNeuronsError(
                        f"corpus {self.name!r} holds the same language twice ({other!r} and {code!r}): merge them under one code"
                    )
            if isinstance(texts, str) or not isinstance(texts, Sequence):
                raise LangNeuronsError(
                    f"corpus {self.name!r}: texts for {lang!r} must be a list of strings, "
                    f"got {type(texts).__name__} (wrap a single text in a list)"
                )
            if len(texts) == 0:
                raise LangNeuronsError(
                    f"corpus {self.name!r}: language {lang!r} has no texts: give it at least one text or leave {lang!r} out"
                )
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    raise LangNeuronsError(
                        f"corpus {self.name!r}: text {i} of {lang!r} is a {type(text).__name__}, not a string: pass plain strings"
                    )
                if not text.strip():
                    raise LangNeuronsError(f"corpus {self.name!r}: text {i} of {lang!r} is blank: remove blank texts")
            clean[lang] = list(texts)
        self.texts = clean
        self.aligned = bool(self.aligned)

    # -- access ------------------------------------------------------------------

    @property
    def langs(self) -> list[str]:
        """Language codes, in corpus order."""
        return list(self.texts)

    @property
    def is_parallel(self) -> bool:
        """True if built from an aligned source and every language has the same number of texts."""
        return self.aligned and len({len(t) for t in self.texts.values()}) == 1

    def __len__(self) -> int:
        """Total number of texts over all languages."""
        return sum(len(t) for t in self.texts.values())

    def __iter__(self) -> Iterator[str]:
        """Iterate over the language codes."""
        return iter(self.texts)

    def __contains__(self, lang: object) -> bool:
        """True if ``lang`` (any spelling: ``de`` or ``deu_Latn``) is in the corpus."""
        try:
            self._resolve(lang)  # type: ignore[arg-type]
        except (UnknownLanguageError, MissingLanguageError):
            return False
        return True

    def __getitem__(self, lang: str) -> list[str]:
        """The texts of ``lang`` (``de`` also finds a corpus keyed ``deu_Latn`` and vice versa)."""
        return self.texts[self._resolve(lang)]

    def _resolve(self, lang: str) -> str:
        code = validate_lang(lang)
        if code in self.texts:
            return code
        matches = [key for key in self.texts if same_language(key, code)]
        if len(matches) == 1:
            return matches[0]
        raise MissingLanguageError(f"corpus {self.name!r} has no language {lang!r}: it holds {show_langs(self.texts)}")

    def __repr__(self) -> str:
        counts = [f"{lang}: {len(t)}" for lang, t in self.texts.items()]
        if len(counts) > 8:
            counts = counts[:8] + [f"... +{len(counts) - 8} more"]
        return (
            f"LanguageCorpus(name={self.name!r}, {len(self.texts)} languages, "
            f"texts={{{', '.join(counts)}}}, parallel={self.is_parallel})"
        )

    def summary(self) -> str:
        """A small table: language, name, number of texts, mean characters per text."""
        kind = "parallel" if self.is_parallel else "not parallel"
        lines = [f"corpus {self.name!r}: {len(self.texts)} languages, {len(self)} texts, {kind}"]
        lines.append(f"{'lang':<10} {'name':<24} {'texts':>7} {'mean chars':>11}")
        for lang, texts in self.texts.items():
            mean = sum(len(t) for t in texts) / len(texts)
            lines.append(f"{lang:<10} {language_name(lang)[:24]:<24} {len(texts):>7} {mean:>11.1f}")
        return "\n".join(lines)

    # -- derived corpora -----------------------------------------------------------

    def _derive(self, texts: dict[str, list[str]], name: str | None = None) -> LanguageCorpus:
        return LanguageCorpus(texts, name or self.name, self.description, self.aligned)

    def subset(self, langs: str | Sequence[str]) -> LanguageCorpus:
        """A corpus with only ``langs`` (a list or ``"en,de"``), in that order."""
        keys = [self._resolve(code) for code in parse_langs(langs)]
        return self._derive({key: list(self.texts[key]) for key in keys})

    def take(self, n: int, seed: int = 0) -> LanguageCorpus:
        """At most ``n`` texts per language, drawn deterministically from ``seed``.

        Kept texts stay in corpus order.  A parallel corpus keeps the same items in
        every language, so it stays parallel.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LangNeuronsError(f"take(n): n must be a positive integer, got {n!r}")
        shared = self._shared_indices(lambda m, rng: rng.sample(range(m), min(n, m)), seed)
        out = {}
        for lang, texts in self.texts.items():
            keep = (
                shared
                if shared is not None
                else _pick(len(texts), lambda m, rng: rng.sample(range(m), min(n, m)), seed, lang)
            )
            out[lang] = [texts[i] for i in keep]
        return self._derive(out)

    def split(self, held_out: float = 0.2, seed: int = 0) -> tuple[LanguageCorpus, LanguageCorpus]:
        """Split every language into (train, held-out), deterministically from ``seed``.

        ``held_out`` is the fraction of texts per language that go to the held-out
        side (rounded, at least one, and at least one text stays in train).  For a
        parallel corpus the same item indices are held out in every language, so
        both sides stay parallel.

        Raises:
            LangNeuronsError (a ValueError): if ``held_out`` is not in (0, 1) or a language has fewer than 2 texts.
        """
        if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) or not 0 < held_out < 1:
            raise LangNeuronsError(
                f"split(held_out=...): held_out must be a fraction between 0 and 1, got {held_out!r}"
            )
        for lang, texts in self.texts.items():
            if len(texts) < 2:
                raise LangNeuronsError(
                    f"cannot split corpus {self.name!r}: {lang!r} has {len(texts)} text, need at least 2 per language"
                )

        def choose(m: int, rng: random.Random) -> list[int]:
            k = min(max(round(held_out * m), 1), m - 1)
            return rng.sample(range(m), k)

        shared = self._shared_indices(choose, seed)
        train: dict[str, list[str]] = {}
        test: dict[str, list[str]] = {}
        for lang, texts in self.texts.items():
            held = set(shared if shared is not None else _pick(len(texts), choose, seed, lang))
            train[lang] = [t for i, t in enumerate(texts) if i not in held]
            test[lang] = [t for i, t in enumerate(texts) if i in held]
        return self._derive(train, f"{self.name}/train"), self._derive(test, f"{self.name}/held_out")

    def _shared_indices(self, choose: Callable[[int, random.Random], list[int]], seed: int) -> list[int] | None:
        """Indices to use in every language when the corpus is parallel, else None."""
        if not self.is_parallel:
            return None
        m = len(next(iter(self.texts.values())))
        return sorted(choose(m, random.Random(seed)))

    # -- serialisation ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_dict`)."""
        return {
            "name": self.name,
            "description": self.description,
            "aligned": self.aligned,
            "texts": {lang: list(texts) for lang, texts in self.texts.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LanguageCorpus:
        """Rebuild a corpus from :meth:`to_dict` output (e.g. after ``json.load``)."""
        if not isinstance(data, Mapping):
            raise LangNeuronsError(f"LanguageCorpus.from_dict needs a dict, got {type(data).__name__}")
        missing = [key for key in ("texts", "name") if key not in data]
        if missing:
            raise LangNeuronsError(
                f"LanguageCorpus.from_dict: missing key(s) {', '.join(map(repr, missing))}: pass the output of to_dict()"
            )
        return cls(
            texts=dict(data["texts"]),
            name=data["name"],
            description=data.get("description", ""),
            aligned=bool(data.get("aligned", False)),
        )


def _pick(m: int, choose: Callable[[int, random.Random], list[int]], seed: int, lang: str) -> list[int]:
    """Sorted indices chosen for one language, seeded by (seed, language)."""
    return sorted(choose(m, random.Random(f"{seed}:{lang}")))
