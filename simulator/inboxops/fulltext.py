"""Full-text search for `GET /tickets?query=`, as PostgreSQL's `websearch_to_tsquery` (pure).

InboxOps documents `query` as "Full-text search (PostgreSQL websearch). Matches ticket
subject/body vectors and message bodies". The emulation follows websearch syntax:

- words are ANDed: `refund invoice` needs both;
- `"quoted text"` is a phrase: its words must follow each other in one field;
- `-word` / `-"a phrase"` must not occur;
- `or` between two operands makes either do: `sad cat or dog rat` is sad & (cat | dog) & rat;
  binds tighter than the implicit AND; a leading or trailing `or` is ignored.

Text is split into words of letters and digits and compared case-insensitively, with no
stemming and no stop words: PostgreSQL's `simple` configuration. A query with text but no word
(`!!!`) matches nothing, as an empty tsquery does.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from simulator.inboxops.messages import Message
from simulator.inboxops.models import TicketRecord

_WORD = re.compile(r"[^\W_]+")
_TAG = re.compile(r"<[^>]*>")
#: A query token: a quoted phrase, an optionally negated bare chunk, or a lone quote's rest.
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')

Phrase = tuple[str, ...]


@lru_cache(maxsize=65536)
def words(text: str) -> Phrase:
    """The lowercased words of `text`, in order."""
    return tuple(w.casefold() for w in _WORD.findall(text))


@dataclass(frozen=True)
class Operand:
    """A word or phrase that must (or, negated, must not) occur in one field."""

    phrase: Phrase
    negated: bool = False

    def holds(self, fields: Sequence[Phrase]) -> bool:
        """Whether the operand is satisfied by the document's fields."""
        found = any(_contains(f, self.phrase) for f in fields)
        return found != self.negated


@dataclass(frozen=True)
class TextQuery:
    """An AND of clauses, each an OR of operands; `empty` when the text held no word."""

    clauses: tuple[tuple[Operand, ...], ...]

    @property
    def empty(self) -> bool:
        """True when nothing can match (no word in the query)."""
        return not self.clauses

    def matches(self, texts: Iterable[str]) -> bool:
        """Whether a document made of these field texts matches."""
        if not self.clauses:
            return False
        fields = [words(t) for t in texts if t]
        return all(any(op.holds(fields) for op in clause) for clause in self.clauses)


def parse(text: str) -> TextQuery:
    """Parse websearch syntax into a `TextQuery`."""
    clauses: list[list[Operand]] = []
    pending_or = False
    for m in _TOKEN.finditer(text):
        quoted = m.group(2) is not None
        negated = bool(m.group(1) if quoted else m.group(3))
        raw = m.group(2) if quoted else m.group(4)
        if not quoted and not negated and raw.casefold() == "or":
            pending_or = bool(clauses)
            continue
        phrase = words(raw)
        if not phrase:
            continue
        operand = Operand(phrase, negated)
        if pending_or:
            clauses[-1].append(operand)
        else:
            clauses.append([operand])
        pending_or = False
    return TextQuery(tuple(tuple(c) for c in clauses))


def ticket_texts(rec: TicketRecord) -> list[str]:
    """What a ticket's search covers: subject and message bodies (its body is its first note)."""
    texts = [str(rec.data.get("subject") or "")]
    texts.extend(_body(message) for message in rec.messages)
    return texts


def _body(message: Message) -> str:
    """A message's text: `body_text`, else `body_html` without its tags."""
    if message.body_text:
        return message.body_text
    return html.unescape(_TAG.sub(" ", message.body_html or ""))


def _contains(field: Phrase, phrase: Phrase) -> bool:
    n = len(phrase)
    if n == 1:
        return phrase[0] in field
    first = phrase[0]
    return any(field[i] == first and field[i : i + n] == phrase for i in range(len(field) - n + 1))
