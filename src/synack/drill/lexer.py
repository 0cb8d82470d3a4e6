"""Tokens of a packetdrill script (``../shared/docs/packetdrill-language.md``, "Lexical"), with the
FreeBSD fork's ``#ifdef NAME`` / ``#ifndef NAME`` / ``#else`` / ``#endif`` applied on the way.

One pass with one compiled regular expression: comments (``// …``, ``/* … */``) and whitespace are
skipped; numbers (decimal, ``0x`` hex, floats such as ``.01``), words, ``"strings"``,
backquoted commands and ``%{ code }%`` blocks (both may span lines), ``...``, options
(``--name[=value]``, ``-D NAME[=VALUE]`` before the first event) and single punctuation characters
become :class:`Token`\\ s with their line and column. A number never swallows the first dot of a
``...`` (``0.100...0.200`` is three tokens).

Conditionals are line directives: ``#`` must be the first non-blank character of its line. The
names they test are those of ``-D``/``--define`` — from the command line, and from the script's
own option lines, which are read before any directive below them (so an option takes effect
exactly where it is written). Lines in an inactive branch are skipped whole; their line numbers
still count. A directive out of place (an ``#else`` without ``#ifdef``, an ``#ifdef`` left open)
is a :class:`~synack.drill.script.DrillError` with its position.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Final

from synack.drill.script import DrillError, Pos

__all__ = ["Token", "tokenize"]

NUMBER: Final = "number"
WORD: Final = "word"
STRING: Final = "string"
COMMAND: Final = "command"
CODE: Final = "code"
ELLIPSIS: Final = "..."
OPTION: Final = "option"
PUNCT: Final = "punct"
EOF: Final = "eof"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text (a string's or a command's contents, without the quotes),
    where it starts (``pos``) and its character offsets in the source (``start``, ``end``)."""

    kind: str
    text: str
    pos: Pos
    start: int
    end: int

    def is_punct(self, char: str) -> bool:
        return self.kind == PUNCT and self.text == char

    def describe(self) -> str:
        """How an error message names the token."""
        if self.kind == EOF:
            return "end of script"
        if self.kind in (STRING, COMMAND, CODE):
            return f"{self.kind} {self.text[:20]!r}"
        return repr(self.text)


_SCAN: Final = re.compile(r"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<newline>\n)
  | (?P<comment>//[^\n]*)
  | (?P<block>/\*)
  | (?P<option>--[A-Za-z0-9_][A-Za-z0-9_-]*(?:=[^\s]*)?)
  | (?P<number>0[xX][0-9A-Fa-f]+|\d+(?:\.(?!\.)\d*)?|\.\d+)
  | (?P<word>[A-Za-z0-9_]+)
  | (?P<string>")
  | (?P<command>`)
  | (?P<code>%\{)
  | (?P<ellipsis>\.\.\.)
  | (?P<punct>.)
""", re.VERBOSE)

_KINDS: Final = {"number": NUMBER, "word": WORD, "ellipsis": ELLIPSIS}
_STRING_BODY: Final = re.compile(r'(?:[^"\\\n]|\\.)*"')
_DIRECTIVE: Final = re.compile(r"#\s*(\w+)\s*(\w*)\s*(?://.*)?$")
_LONG_OPTION: Final = re.compile(r"--([A-Za-z0-9_][A-Za-z0-9_-]*)(?:=(\S*))?")
_SHORT_DEFINE: Final = re.compile(r"-(D)(?:=?(\S+))?")
_NEXT_WORD: Final = re.compile(r"[ \t]+(\S+)")


class _Lexer:
    """The scanner's state: the text, where it is, the open conditionals, the tokens so far."""

    def __init__(self, text: str, defines: MutableMapping[str, str]) -> None:
        self.text = text
        self.defines = defines
        self.i = 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.tokens: list[Token] = []
        self.stack: list[tuple[bool, bool, Pos]] = []  # (branch taken, in #else, #ifdef's position)
        self.header = True  # still before the first event: options may appear
        self.at_line_start = True

    def pos(self, offset: int) -> Pos:
        line = bisect.bisect_right(self.line_starts, offset)
        return Pos(line, offset - self.line_starts[line - 1] + 1)

    @property
    def active(self) -> bool:
        return all(taken for taken, _, _ in self.stack)

    def run(self) -> list[Token]:
        text = self.text
        n = len(text)
        while self.i < n:
            if self.at_line_start and self._directive():
                continue
            if not self.active:
                self._skip_line()
                continue
            self._one()
        if self.stack:
            raise DrillError("#ifdef without #endif", self.stack[-1][2])
        self.tokens.append(Token(EOF, "", self.pos(n), n, n))
        return self.tokens

    def _skip_line(self) -> None:
        nl = self.text.find("\n", self.i)
        self.i = len(self.text) if nl < 0 else nl + 1
        self.at_line_start = True

    def _directive(self) -> bool:
        """At the start of a line: handle it if it is a ``#`` directive (True), else leave it."""
        text = self.text
        j = self.i
        while j < len(text) and text[j] in " \t":
            j += 1
        if j >= len(text) or text[j] != "#":
            self.at_line_start = False
            return False
        nl = text.find("\n", j)
        end = len(text) if nl < 0 else nl
        pos = self.pos(j)
        m = _DIRECTIVE.match(text[j:end].rstrip())
        if m is None:
            raise DrillError(f"malformed directive {text[j:end].strip()!r}", pos)
        self._apply(m.group(1), m.group(2), pos)
        self.i = end + 1 if nl >= 0 else end
        self.at_line_start = True
        return True

    def _apply(self, word: str, name: str, pos: Pos) -> None:
        if word in ("ifdef", "ifndef"):
            if not name:
                raise DrillError(f"#{word} needs a name", pos)
            self.stack.append(((name in self.defines) == (word == "ifdef"), False, pos))
        elif word == "else":
            if not self.stack or self.stack[-1][1]:
                raise DrillError("#else without #ifdef" if not self.stack else "second #else", pos)
            taken, _, start = self.stack.pop()
            self.stack.append((not taken, True, start))
        elif word == "endif":
            if not self.stack:
                raise DrillError("#endif without #ifdef", pos)
            self.stack.pop()
        else:
            raise DrillError(f"unknown directive #{word} (known: #ifdef, #ifndef, #else, #endif)", pos)

    def _one(self) -> None:
        text = self.text
        m = _SCAN.match(text, self.i)
        assert m is not None  # the last alternative matches any character but a newline
        kind = m.lastgroup
        start = self.i
        self.i = m.end()
        if kind == "space" or kind == "comment":
            return
        if kind == "newline":
            self.at_line_start = True
            return
        if kind == "block":
            close = text.find("*/", self.i)
            if close < 0:
                raise DrillError("unterminated /* comment", self.pos(start))
            self.i = close + 2
            self.at_line_start = False
            return
        if kind == "string":
            body = _STRING_BODY.match(text, self.i)
            if body is None:
                raise DrillError("unterminated string", self.pos(start))
            self.i = body.end()
            self._add(STRING, _unescape(text[start + 1:self.i - 1]), start)
            return
        if kind == "command" or kind == "code":
            closer = "`" if kind == "command" else "}%"
            close = text.find(closer, self.i)
            if close < 0:
                what = "backquoted command" if kind == "command" else "%{ code }% block"
                raise DrillError(f"unterminated {what}", self.pos(start))
            self.i = close + len(closer)
            self._add(COMMAND if kind == "command" else CODE, text[m.end():close], start)
            self.header = False
            return
        if kind == "option" or (self.header and kind == "punct" and m.group() == "-"
                                and text.startswith("-D", start)):
            self._option(start)
            return
        self.header = False
        self._add(_KINDS.get(kind or "", PUNCT), m.group(), start)

    def _add(self, kind: str, text: str, start: int) -> None:
        self.tokens.append(Token(kind, text, self.pos(start), start, self.i))

    def _option(self, start: int) -> None:
        """``--name[=value]`` or ``-D NAME[=VALUE]``; a define takes effect at once."""
        text = self.text
        if text.startswith("--", start):
            m = _LONG_OPTION.match(text, start)
        else:
            m = _SHORT_DEFINE.match(text, start)
        assert m is not None
        self.i = m.end()
        name, value = m.group(1), m.group(2)
        if name in ("define", "D") and not value:
            word = _NEXT_WORD.match(text, self.i)
            if word is None:
                raise DrillError(f"--{name} needs NAME[=VALUE]", self.pos(start))
            value = word.group(1)
            self.i = word.end()
        if name in ("define", "D"):
            assert value is not None
            key, _, val = value.partition("=")
            self.defines[key] = val
        self._add(OPTION, f"{name}={value}" if value is not None else name, start)


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def tokenize(text: str, defines: MutableMapping[str, str] | None = None) -> list[Token]:
    """The tokens of ``text`` with conditionals applied, ending with an ``eof`` token. ``defines``
    (NAME -> VALUE) is read and extended by the script's own ``--define``/``-D`` options."""
    return _Lexer(text, {} if defines is None else defines).run()
