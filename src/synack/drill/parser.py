"""A packetdrill script, from text to the typed tree of :mod:`synack.drill.script`.

Hand-written recursive descent rather than a parser generator or library: the language is small
(options, then events; an event is a time and one of four actions), it needs one token of
lookahead almost everywhere, and what matters most to a user is the error message — which token,
at which line and column, was expected instead of what. A grammar tool would add a dependency
and give worse messages. The grammar, as ``../shared/docs/packetdrill-language.md`` states it::

    script  := option* event*
    event   := time action
    time    := '*' | ['+'] NUM ['~' ['+'] NUM] | ['+'] NUM '...' ['+'] NUM      (the last: a call)
    action  := packet | syscall | `command` | %{ code }%
    packet  := ('<'|'>') [NUM '>' NUM] flags NUM ':' NUM '(' NUM ')'
               ['ack' NUM] ['win' NUM] ['urg' NUM] ['<' (options | '...') '>']
    syscall := WORD '(' [expr {',' expr}] ')' '=' expr [ERRNO] ['(' note ')']
    expr    := term {'|' term};  term := '-' term | NUM | WORD ['(' args ')'] | STRING ['...']
               | '...' | '[' exprs ']' | '{' fields '}'

Checks made here, each an error with its position (packetdrill makes the same): the first event
is at time 0, absolute times never go backwards, ``*`` and ranges only on outbound packets,
``START...END`` only on system calls, ``win`` on every inbound packet, ``<...>`` only outbound,
``end == start + len``.
"""

from __future__ import annotations

import os
from typing import Final

from synack.drill import lexer
from synack.drill.lexer import Token
from synack.drill.script import (
    Action,
    Code,
    Command,
    DrillError,
    Event,
    Expr,
    ExprCall,
    ExprEllipsis,
    ExprInt,
    ExprList,
    ExprNeg,
    ExprOr,
    ExprStr,
    ExprStruct,
    ExprWord,
    Field,
    OptionSpec,
    Packet,
    Pos,
    Script,
    ScriptOption,
    Syscall,
    TimeKind,
    TimeSpec,
)

__all__ = ["FLAG_LETTERS", "parse", "parse_file"]

FLAG_LETTERS: Final = "FSRP.UEW"
"""The flag characters of a packet line (``.`` is ACK, ``E`` ECE, ``W`` CWR)."""

_MAX_U32: Final = 0xFFFFFFFF


class _Parser:
    """One token of lookahead over the token list; each method parses one rule."""

    def __init__(self, tokens: list[Token], text: str) -> None:
        self.toks = tokens
        self.text = text
        self.k = 0

    # -- token helpers -------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.toks[self.k]

    def peek(self, ahead: int = 1) -> Token:
        return self.toks[min(self.k + ahead, len(self.toks) - 1)]

    def take(self) -> Token:
        t = self.toks[self.k]
        if t.kind != lexer.EOF:
            self.k += 1
        return t

    def fail(self, expected: str, tok: Token | None = None) -> DrillError:
        t = tok or self.tok
        return DrillError(f"expected {expected}, found {t.describe()}", t.pos)

    def punct(self, char: str) -> Token:
        if not self.tok.is_punct(char):
            raise self.fail(repr(char))
        return self.take()

    def accept(self, char: str) -> bool:
        if self.tok.is_punct(char):
            self.k += 1
            return True
        return False

    def number(self, what: str) -> int:
        t = self.tok
        if t.kind != lexer.NUMBER or "." in t.text:
            raise self.fail(what)
        self.take()
        return int(t.text, 0)

    def u32(self, what: str) -> int:
        t = self.tok
        n = self.number(what)
        if n > _MAX_U32:
            raise DrillError(f"{what} {n} does not fit 32 bits", t.pos)
        return n

    def word(self, what: str) -> Token:
        if self.tok.kind != lexer.WORD:
            raise self.fail(what)
        return self.take()

    # -- script --------------------------------------------------------------------------------

    def script(self) -> tuple[list[ScriptOption], list[Event]]:
        options: list[ScriptOption] = []
        while self.tok.kind == lexer.OPTION:
            t = self.take()
            name, eq, value = t.text.partition("=")
            options.append(ScriptOption(name, value if eq else None, t.pos))
        events: list[Event] = []
        while self.tok.kind != lexer.EOF:
            if self.tok.kind == lexer.OPTION:
                raise DrillError(f"option --{self.tok.text} after the first event "
                                 f"(options come first)", self.tok.pos)
            events.append(self.event())
        _check_times(events)
        return options, events

    def event(self) -> Event:
        if self.tok.kind == lexer.COMMAND:
            # packetdrill's init and cleanup commands carry no time: they run where they stand.
            t = self.take()
            return Event(TimeSpec(TimeKind.RELATIVE, 0.0, None, t.pos), Command(t.text, t.pos))
        time, end = self.time()
        t = self.tok
        action: Action
        if t.kind == lexer.COMMAND:
            self.take()
            action = Command(t.text, t.pos)
        elif t.kind == lexer.CODE:
            self.take()
            action = Code(t.text, t.pos)
        elif t.is_punct("<") or t.is_punct(">"):
            action = self.packet()
        elif t.kind == lexer.WORD:
            action = self.syscall(end)
        else:
            raise self.fail("a packet ('<' or '>'), a system call, a `command` or a %{ code }% block")
        if end is not None and not isinstance(action, Syscall):
            raise DrillError("START...END is only for system calls", time.pos)
        if time.kind is TimeKind.ANY and not (isinstance(action, Packet) and not action.inbound):
            raise DrillError("time * can only be used with outbound packets", time.pos)
        if time.end is not None and not (isinstance(action, Packet) and not action.inbound):
            raise DrillError("a time range can only be used with outbound packets", time.pos)
        return Event(time, action)

    def time(self) -> tuple[TimeSpec, float | None]:
        """An event's time, and the END of ``START...END`` (None without one)."""
        pos = self.tok.pos
        if self.accept("*"):
            return TimeSpec(TimeKind.ANY, 0.0, None, pos), None
        rel = self.accept("+")
        start = self.seconds()
        if self.accept("~"):
            rel_end = self.accept("+")
            if rel_end != rel:
                raise DrillError("a range is either absolute (0.1~0.3) or relative (+0.1~+0.3)", pos)
            end = self.seconds()
            if end < start:
                raise DrillError("time range is backwards", pos)
            kind = TimeKind.RELATIVE_RANGE if rel else TimeKind.ABSOLUTE_RANGE
            return TimeSpec(kind, start, end, pos), None
        call_end: float | None = None
        if self.tok.kind == lexer.ELLIPSIS:
            self.take()
            self.accept("+")  # END is in START's frame either way
            call_end = self.seconds()
            if call_end < start:
                raise DrillError("END is before START", pos)
        return TimeSpec(TimeKind.RELATIVE if rel else TimeKind.ABSOLUTE, start, None, pos), call_end

    def seconds(self) -> float:
        t = self.tok
        if t.kind != lexer.NUMBER or t.text.lower().startswith("0x"):
            raise self.fail("a time (seconds)")
        self.take()
        return float(t.text)

    # -- packets -------------------------------------------------------------------------------

    def packet(self) -> Packet:
        head = self.take()
        inbound = head.text == "<"
        ports: tuple[int, int] | None = None
        if self.tok.kind == lexer.NUMBER and self.peek().is_punct(">"):
            sport = self.number("a source port")
            self.punct(">")
            dport = self.number("a destination port")
            if sport > 0xFFFF or dport > 0xFFFF:
                raise DrillError("port out of range", head.pos)
            ports = (sport, dport)
        flags = self.flags()
        seq_pos = self.tok.pos
        start = self.u32("a sequence number")
        self.punct(":")
        end = self.u32("the end sequence number")
        self.punct("(")
        length = self.number("a payload length")
        self.punct(")")
        if (start + length) & _MAX_U32 != end:
            raise DrillError(f"sequence range {start}:{end}({length}): end must be start + length", seq_pos)
        fields: dict[str, int] = {}
        while self.tok.kind == lexer.WORD and self.tok.text in ("ack", "win", "urg") \
                and self.tok.text not in fields:
            name = self.take().text
            fields[name] = self.u32(f"a number after {name!r}")
        if self.tok.kind == lexer.WORD and self.tok.text in ("ack", "win", "urg"):
            raise DrillError(f"{self.tok.text!r} given twice", self.tok.pos)
        options = self.options(inbound)
        if inbound and "win" not in fields:
            raise DrillError("an inbound packet needs 'win N'", head.pos)
        return Packet(inbound, ports, flags, start, end, length, fields.get("ack"), fields.get("win"),
                      fields.get("urg"), options, head.pos)

    def flags(self) -> str:
        """The flag letters: adjacent words and dots (``S.``, ``FP.``, ``.``), or ``-``."""
        first = self.tok
        if first.is_punct("-"):
            self.take()
            return "-"
        text = ""
        end = first.start
        while (self.tok.kind == lexer.WORD or self.tok.is_punct(".")) and self.tok.start == end:
            text += self.tok.text
            end = self.take().end
        if not text:
            raise self.fail("TCP flags (letters of FSRP.UEW, or -)", first)
        bad = sorted(set(text) - set(FLAG_LETTERS))
        if bad or len(set(text)) != len(text):
            what = f"unknown flag {''.join(bad)!r}" if bad else "a flag given twice"
            raise DrillError(f"{what} in {text!r} (flags are letters of FSRP.UEW, or -)", first.pos)
        return text

    def options(self, inbound: bool) -> tuple[OptionSpec, ...] | None:
        if not self.tok.is_punct("<"):
            return ()
        open_tok = self.take()
        if self.tok.kind == lexer.ELLIPSIS:
            self.take()
            self.punct(">")
            if inbound:
                raise DrillError("<...> for TCP options can only be used with outbound packets", open_tok.pos)
            return None
        opts = [self.option()]
        while self.accept(","):
            opts.append(self.option())
        self.punct(">")
        return tuple(opts)

    def option(self) -> OptionSpec:
        t = self.word("a TCP option (mss, wscale, sackOK, sack, TS, nop, eol)")
        name = t.text
        if name in ("nop", "eol", "sackOK"):
            return OptionSpec(name, (), t.pos)
        if name == "mss":
            return OptionSpec(name, (self._bounded(0xFFFF, "mss value"),), t.pos)
        if name == "wscale":
            return OptionSpec(name, (self._bounded(0xFF, "window scale shift count"),), t.pos)
        if name == "sack":
            blocks: list[int] = []
            while self.tok.kind == lexer.NUMBER:
                blocks.append(self.u32("a SACK left edge"))
                self.punct(":")
                blocks.append(self.u32("a SACK right edge"))
            if not blocks:
                raise self.fail("SACK blocks (left:right ...)")
            return OptionSpec(name, tuple(blocks), t.pos)
        if name == "TS":
            self._keyword("val")
            val = self.u32("a TS val")
            self._keyword("ecr")
            return OptionSpec(name, (val, self.u32("a TS ecr")), t.pos)
        raise DrillError(f"TCP option {name!r} is not supported (known: mss, wscale, sackOK, sack, TS, "
                         f"nop, eol)", t.pos, unsupported=name in ("FO", "md5", "fo", "exp-tfo"))

    def _bounded(self, limit: int, what: str) -> int:
        t = self.tok
        n = self.number(f"a {what}")
        if n > limit:
            raise DrillError(f"{what} {n} out of range", t.pos)
        return n

    def _keyword(self, word: str) -> None:
        if not (self.tok.kind == lexer.WORD and self.tok.text == word):
            raise self.fail(repr(word))
        self.take()

    # -- system calls --------------------------------------------------------------------------

    def syscall(self, end: float | None) -> Syscall:
        name = self.take()
        self.punct("(")
        args: list[Expr] = []
        if not self.tok.is_punct(")"):
            args.append(self.expr())
            while self.accept(","):
                args.append(self.expr())
        self.punct(")")
        self.punct("=")
        result = self.expr()
        errno: str | None = None
        if self.tok.kind == lexer.WORD:
            errno = self.take().text
        note = self.note() if self.tok.is_punct("(") else ""
        return Syscall(name.text, tuple(args), result, errno, note, end, name.pos)

    def note(self) -> str:
        """``(free text)``: everything up to the matching parenthesis, as written."""
        open_tok = self.take()
        depth = 1
        while depth:
            t = self.take()
            if t.kind == lexer.EOF:
                raise DrillError("unclosed '(' of a note", open_tok.pos)
            if t.is_punct("("):
                depth += 1
            elif t.is_punct(")"):
                depth -= 1
                close = t
        return self.text[open_tok.end:close.start].strip()

    def expr(self) -> Expr:
        first = self.term()
        if not self.tok.is_punct("|"):
            return first
        terms = [first]
        while self.accept("|"):
            terms.append(self.term())
        return ExprOr(tuple(terms), _pos(first))

    def term(self) -> Expr:
        t = self.tok
        if self.accept("-"):
            return ExprNeg(self.term(), t.pos)
        if t.kind == lexer.NUMBER:
            if "." in t.text:
                raise self.fail("an integer", t)
            self.take()
            return ExprInt(int(t.text, 0), t.pos)
        if t.kind == lexer.ELLIPSIS:
            self.take()
            return ExprEllipsis(t.pos)
        if t.kind == lexer.STRING:
            self.take()
            dots = self.tok.kind == lexer.ELLIPSIS and self.tok.start == t.end
            if dots:
                self.take()
            return ExprStr(t.text, t.pos, dots)
        if t.kind == lexer.WORD:
            self.take()
            if self.tok.is_punct("("):
                return ExprCall(t.text, self.call_args(), t.pos)
            return ExprWord(t.text, t.pos)
        if self.accept("["):
            items = self.items("]")
            return ExprList(tuple(items), t.pos)
        if self.accept("{"):
            return ExprStruct(tuple(self.fields()), t.pos)
        raise self.fail("a value")

    def call_args(self) -> tuple[Expr, ...]:
        self.punct("(")
        return tuple(self.items(")"))

    def items(self, closer: str) -> list[Expr]:
        out: list[Expr] = []
        if self.accept(closer):
            return out
        out.append(self.expr())
        while self.accept(","):
            out.append(self.expr())
        self.punct(closer)
        return out

    def fields(self) -> list[Field]:
        out: list[Field] = []
        if self.accept("}"):
            return out
        while True:
            start = self.tok.pos
            value = self.expr()
            if self.accept("="):
                if not isinstance(value, (ExprWord, ExprCall)):
                    raise DrillError("a field name must be a word", start)
                out.append(Field(value.name, self.expr(), start))
            else:
                out.append(Field(None, value, start))
            if self.accept("}"):
                return out
            self.punct(",")


def _pos(e: Expr) -> Pos:
    return e.pos


def _check_times(events: list[Event]) -> None:
    """The first event is at time 0; absolute times never go backwards (packetdrill's rules)."""
    last: float | None = None
    for i, ev in enumerate(events):
        t = ev.time
        if i == 0 and t.kind is TimeKind.ABSOLUTE and t.start != 0:
            raise DrillError(f"the first event must be at time 0, not {t.start:g}", t.pos)
        if t.kind in (TimeKind.ABSOLUTE, TimeKind.ABSOLUTE_RANGE):
            if last is not None and t.start < last:
                raise DrillError(f"time goes backwards, from {last:g} to {t.start:g}", t.pos)
            last = t.start


def parse(text: str, path: str = "<script>", defines: dict[str, str] | None = None) -> Script:
    """Parse a script. ``defines`` are the ``-D`` names of the command line (not changed; the
    script's own ``--define`` options are added to the copy kept in :attr:`Script.defines`).
    Raises :class:`~synack.drill.script.DrillError` with the position of the first problem."""
    names = dict(defines or {})
    tokens = lexer.tokenize(text, names)
    options, events = _Parser(tokens, text).script()
    return Script(path, tuple(options), tuple(events), names, tuple(text.splitlines()))


def parse_file(path: str | os.PathLike[str], defines: dict[str, str] | None = None) -> Script:
    """Read and parse a script file. An unreadable file is a :class:`DrillError` naming it."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise DrillError(f"cannot read {name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DrillError(f"cannot read {name}: {exc.strerror or exc}") from None
    return parse(text, name, defines)
