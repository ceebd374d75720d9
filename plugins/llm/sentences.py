"""Cut a streamed plain-text answer into sentences and paragraphs as they finish.

The delivery code sends a long answer in parts; it wants whole sentences, never half of one.
``SentenceAssembler.feed(piece)`` returns the sentences completed by that piece, ``finish()`` the
rest. Joined, the returned texts are exactly the text fed.
"""
from __future__ import annotations

from dataclasses import dataclass

from .plaintext import sentence_cuts


@dataclass(frozen=True)
class Sentence:
    """One finished piece of the answer.

    text: the sentence (or line) with the whitespace that followed it.
    ends_paragraph: a blank line follows it, or it is the end of the answer.
    """

    text: str
    ends_paragraph: bool = False

    @property
    def content(self) -> str:
        """The text without the whitespace around it."""
        return self.text.strip()


class SentenceAssembler:
    """Sentences end at ``。！？；…``, at ``.!?;`` followed by whitespace (closing quotes stay
    with their sentence) and at line breaks; a blank line ends a paragraph. A sentence is
    returned once the next one has begun, so the whitespace after it is known."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[Sentence]:
        self._buffer += text
        return self._cut(final=False)

    def finish(self) -> list[Sentence]:
        sentences = self._cut(final=True)
        if self._buffer:
            sentences.append(Sentence(self._buffer, True))
            self._buffer = ""
        elif sentences:
            last = sentences[-1]
            sentences[-1] = Sentence(last.text, True)
        return sentences

    def _cut(self, final: bool) -> list[Sentence]:
        text = self._buffer
        out: list[Sentence] = []
        start = 0
        cuts = set(sentence_cuts(text))
        cuts.update(i + 1 for i, ch in enumerate(text) if ch == "\n")
        for cut in sorted(cuts):
            if cut <= start:
                continue
            end = cut
            while end < len(text) and text[end].isspace():
                end += 1
            if end == len(text) and not final:
                break  # more whitespace (or a blank line) may still come
            spaces = text[cut:end]
            if "\n" in spaces:
                end = cut + spaces.rindex("\n") + 1  # the next line's indentation is its own
            elif text[cut - 1] == "\n":
                end = cut
            if not text[start:end].strip():
                continue  # leading whitespace stays with the next sentence
            out.append(Sentence(text[start:end], "\n\n" in text[cut - 1:end]))
            start = end
        self._buffer = text[start:]
        return out
