"""The packetdrill language as ``synack drill`` reads it (../shared/docs/packetdrill-language.md):
every construct of the page parsed into the typed tree, and malformed scripts rejected with the
line and column of the problem."""

from __future__ import annotations

import pytest

from synack.drill.lexer import tokenize
from synack.drill.parser import parse
from synack.drill.script import (
    Code,
    Command,
    DrillError,
    ExprCall,
    ExprEllipsis,
    ExprInt,
    ExprList,
    ExprNeg,
    ExprOr,
    ExprStr,
    ExprStruct,
    ExprWord,
    Packet,
    Pos,
    Syscall,
    TimeKind,
)


def events(text: str, **defines: str) -> list[object]:
    return [e.action for e in parse(text, defines=dict(defines)).events]


def error(text: str, **defines: str) -> DrillError:
    with pytest.raises(DrillError) as info:
        parse(text, defines=dict(defines))
    return info.value


# -- lexical ---------------------------------------------------------------------------------------


def test_comments_whitespace_and_statements_over_lines() -> None:
    script = parse("// a comment\n/* a block\n comment */ 0 socket(...,\n  SOCK_STREAM,\n"
                   " IPPROTO_TCP) = 3 // end\n")
    (ev,) = script.events
    assert isinstance(ev.action, Syscall) and ev.action.name == "socket"
    assert ev.pos == Pos(3, 13)


def test_numbers_words_strings_ellipsis() -> None:
    kinds = [(t.kind, t.text) for t in tokenize('0x1F .01 0.100...0.200 SOCK_STREAM "a b" ...')]
    assert kinds == [("number", "0x1F"), ("number", ".01"), ("number", "0.100"), ("...", "..."),
                     ("number", "0.200"), ("word", "SOCK_STREAM"), ("string", "a b"), ("...", "..."),
                     ("eof", "")]


def test_backquoted_command_and_code_block_may_span_lines() -> None:
    acts = events("0 `sysctl -q a=1\nsysctl -q b=2`\n+0 %{\nassert tcpi_state == TCP_LISTEN\n}%\n")
    assert isinstance(acts[0], Command) and acts[0].text == "sysctl -q a=1\nsysctl -q b=2"
    assert isinstance(acts[1], Code) and "assert tcpi_state" in acts[1].text


def test_a_command_without_a_time_is_packetdrills_init_command() -> None:
    script = parse("`echo init`\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n`echo cleanup`\n")
    assert [type(e.action).__name__ for e in script.events] == ["Command", "Syscall", "Command"]


# -- options and conditionals ----------------------------------------------------------------------


def test_options_with_and_without_values_and_defines() -> None:
    script = parse("--tolerance_usecs=10000\n--strict_segments\n--define FOO=3\n-D BAR\n-DBAZ=x\n"
                   "0 close(3) = 0\n")
    assert [(o.name, o.value) for o in script.options] == [
        ("tolerance_usecs", "10000"), ("strict_segments", None), ("define", "FOO=3"), ("D", "BAR"),
        ("D", "BAZ=x")]
    assert script.defines == {"FOO": "3", "BAR": "", "BAZ": "x"}


def test_ifdef_else_endif_with_command_line_and_script_defines() -> None:
    text = "#ifdef X\n0 close(3) = 0\n#else\n0 close(4) = 0\n#endif\n"
    (on,) = events(text, X="")
    (off,) = events(text)
    assert isinstance(on, Syscall) and isinstance(off, Syscall)
    assert on.args[0] == ExprInt(3, Pos(2, 9)) and off.args[0] == ExprInt(4, Pos(4, 9))
    (own,) = events("--define X=1\n" + text)
    assert isinstance(own, Syscall) and own.args[0] == ExprInt(3, Pos(3, 9))
    (neg,) = events("#ifndef X\n0 close(5) = 0\n#endif\n")
    assert isinstance(neg, Syscall)


def test_nested_conditionals() -> None:
    text = "#ifdef A\n#ifdef B\n0 close(1) = 0\n#else\n0 close(2) = 0\n#endif\n#endif\n"
    (a,) = events(text, A="", B="")
    (b,) = events(text, A="")
    assert events(text) == []
    assert isinstance(a, Syscall) and isinstance(b, Syscall)
    assert int(a.args[0].value) == 1 and int(b.args[0].value) == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "where", "words"), [
    ("#else\n", "1:1", "#else without #ifdef"),
    ("#endif\n", "1:1", "#endif without #ifdef"),
    ("0 close(3) = 0\n  #ifdef X\n", "2:3", "#ifdef without #endif"),
    ("#ifdef X\n#else\n#else\n#endif\n", "3:1", "second #else"),
    ("#if X\n", "1:1", "unknown directive #if"),
    ("#ifdef\n", "1:1", "needs a name"),
])
def test_malformed_directives(text: str, where: str, words: str) -> None:
    err = error(text)
    assert str(err.pos) == where and words in err.message


# -- times -----------------------------------------------------------------------------------------


def test_every_time_form() -> None:
    script = parse("0 close(3) = 0\n+0.1 close(3) = 0\n* > . 1:1(0) ack 1\n0.5~0.7 > . 1:1(0)\n"
                   "+0.1~+0.3 > . 1:1(0)\n1...1.5 close(3) = 0\n+0...0.25 close(3) = 0\n")
    times = [(e.time.kind, e.time.start, e.time.end) for e in script.events]
    assert times == [(TimeKind.ABSOLUTE, 0.0, None), (TimeKind.RELATIVE, 0.1, None),
                     (TimeKind.ANY, 0.0, None),
                     (TimeKind.ABSOLUTE_RANGE, 0.5, 0.7), (TimeKind.RELATIVE_RANGE, 0.1, 0.3),
                     (TimeKind.ABSOLUTE, 1.0, None), (TimeKind.RELATIVE, 0.0, None)]
    ends = [e.action.end for e in script.events if isinstance(e.action, Syscall)]
    assert ends == [None, None, 1.5, 0.25]


@pytest.mark.parametrize(("text", "where", "words"), [
    ("1 close(3) = 0\n", "1:1", "first event must be at time 0"),
    ("0 close(3) = 0\n2 close(3) = 0\n1 close(3) = 0\n", "3:1", "time goes backwards"),
    ("0 close(3) = 0\n* close(3) = 0\n", "2:1", "time * can only be used with outbound packets"),
    ("0 close(3) = 0\n+0~+1 < . 1:1(0) ack 1 win 1\n", "2:1", "a time range can only be used with outbound"),
    ("0 close(3) = 0\n0.3~0.1 > . 1:1(0)\n", "2:1", "time range is backwards"),
    ("0 close(3) = 0\n+0.1~0.3 > . 1:1(0)\n", "2:1", "either absolute"),
    ("0 close(3) = 0\n1...2 > . 1:1(0)\n", "2:1", "START...END is only for system calls"),
    ("0 close(3) = 0\n2...1 close(3) = 0\n", "2:1", "END is before START"),
])
def test_malformed_times(text: str, where: str, words: str) -> None:
    err = error(text)
    assert str(err.pos) == where and words in err.message


# -- packets ---------------------------------------------------------------------------------------


def test_packet_lines_with_every_field() -> None:
    (inb, out, any_opts, none) = events(
        "0 < 1234>8080 S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,TS val 100 ecr 0,nop,wscale 7,eol>\n"
        "+0 > P. 1:1001(1000) ack 1 win 257 urg 3 <nop,nop,sack 1:2 3:4,TS val 1 ecr 100>\n"
        "+0 > S. 0:0(0) ack 1 <...>\n"
        "+0 > R 1:1(0)\n")
    assert isinstance(inb, Packet) and inb.inbound and inb.ports == (1234, 8080) and inb.win == 32792
    assert inb.options is not None
    assert [(o.name, o.values) for o in inb.options] == [
        ("mss", (1000,)), ("sackOK", ()), ("nop", ()), ("nop", ()), ("TS", (100, 0)), ("nop", ()),
        ("wscale", (7,)), ("eol", ())]
    assert isinstance(out, Packet) and not out.inbound and out.flags == "P."
    assert (out.start, out.end) == (1, 1001)
    assert (out.ack, out.win, out.urg) == (1, 257, 3)
    assert out.options is not None and out.options[2].values == (1, 2, 3, 4)
    assert isinstance(any_opts, Packet) and any_opts.options is None
    assert isinstance(none, Packet) and none.options == () and none.ack is None


@pytest.mark.parametrize("flags", ["S", "S.", ".", "P.", "F.", "R", "R.", "FP.", "U.", "SEW", "-",
                                   "FSRP.UEW"])
def test_every_flag_spelling(flags: str) -> None:
    (pkt,) = events(f"0 > {flags} 0:0(0)\n")
    assert isinstance(pkt, Packet) and pkt.flags == flags


@pytest.mark.parametrize(("text", "where", "words"), [
    ("0 < S 0:0(0)\n", "1:3", "an inbound packet needs 'win N'"),
    ("0 > SX 0:0(0)\n", "1:5", "unknown flag 'X'"),
    ("0 > SS 0:0(0)\n", "1:5", "a flag given twice"),
    ("0 > S 0:10(5)\n", "1:7", "end must be start + length"),
    ("0 < S 0:0(0) win 1 <...>\n", "1:20", "<...> for TCP options can only be used with outbound"),
    ("0 > S 0:0(0) <mss 1000 sackOK>\n", "1:24", "expected '>'"),
    ("0 > S 0:0(0) <md5 abc>\n", "1:15", "TCP option 'md5' is not supported"),
    ("0 > S 0:0(0) <wscale 300>\n", "1:22", "window scale shift count 300 out of range"),
    ("0 > S 0:0(0) ack 1 ack 2\n", "1:20", "'ack' given twice"),
    ("0 > S 0:0\n", "2:1", "expected '(', found end of script"),
    ("0 > S 4294967296:4294967296(0)\n", "1:7", "does not fit 32 bits"),
    ("0 = 3\n", "1:3", "expected a packet"),
])
def test_malformed_packets(text: str, where: str, words: str) -> None:
    err = error(text)
    assert str(err.pos) == where and words in err.message, err.message


# -- system calls ----------------------------------------------------------------------------------


def test_every_value_form_of_the_language_page() -> None:
    acts = events(
        "0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0\n"
        "+0 setsockopt(4, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0\n"
        "+0 getsockopt(4, SOL_SOCKET, SO_ERROR, [ECONNRESET], [4]) = 0\n"
        "+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n"
        "+0 poll([{fd=3, events=POLLIN}], 1, 0) = 1\n"
        "+0 connect(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr(\"192.0.2.1\")}, 16)"
        " = -1 EINPROGRESS (Operation now in progress)\n"
        "+0 write(4, ..., 10) = 10\n"
        "+0 send(4, \"abc\"..., 3, 0) = 3\n")
    calls = [a for a in acts if isinstance(a, Syscall)]
    assert isinstance(calls[0].args[3], ExprList)
    linger = calls[1].args[3]
    assert isinstance(linger, ExprStruct) and [f.name for f in linger.fields] == ["onoff", "linger"]
    assert calls[2].args[3] == ExprList((ExprWord("ECONNRESET", Pos(3, 41)),), Pos(3, 40))
    assert isinstance(calls[3].args[2], ExprOr) and len(calls[3].args[2].terms) == 2
    poll = calls[4].args[0]
    assert isinstance(poll, ExprList) and isinstance(poll.items[0], ExprStruct)
    addr = calls[5].args[1]
    assert isinstance(addr, ExprStruct) and isinstance(addr.get("sin_port"), ExprCall)
    assert isinstance(calls[5].result, ExprNeg) and calls[5].errno == "EINPROGRESS"
    assert calls[5].note == "Operation now in progress"
    assert isinstance(calls[6].args[1], ExprEllipsis)
    assert calls[7].args[1] == ExprStr("abc", Pos(8, 12), ellipsis=True)


def test_msghdr_and_iovec_structures() -> None:
    (call,) = events("0 sendmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 30}], msg_flags=0}, 0) = 30\n")
    assert isinstance(call, Syscall)
    msg = call.args[1]
    assert isinstance(msg, ExprStruct)
    assert [f.name for f in msg.fields] == ["msg_name", "msg_iov", "msg_flags"]


def test_a_note_may_hold_any_words() -> None:
    (call,) = events("0 read(4, ..., 1) = -1 ECONNRESET (Can't: peer's reset, 100% sure)\n")
    assert isinstance(call, Syscall) and call.note == "Can't: peer's reset, 100% sure"


@pytest.mark.parametrize(("text", "where", "words"), [
    ("0 close(3 = 0\n", "1:11", "expected ')'"),
    ("0 close(3)\n", "2:1", "expected '=', found end of script"),
    ("0 close(3) = \n", "2:1", "expected a value"),
    ('0 write(4, "abc, 3) = 3\n', "1:12", "unterminated string"),
    ("0 `sysctl\n", "1:3", "unterminated backquoted command"),
    ("0 %{ assert 1\n", "1:3", "unterminated %{ code }% block"),
    ("0 close(3) = 0 /* open\n", "1:16", "unterminated /* comment"),
    ("0 read(4, ..., 1) = -1 EIO (unclosed\n", "1:28", "unclosed '(' of a note"),
    ("0 f({a b}) = 0\n", "1:8", "expected ','"),
    ("0 f({1=2}) = 0\n", "1:6", "a field name must be a word"),
    ("0 close(3) = 0\n--tolerance_usecs=1\n", "2:1", "after the first event"),
])
def test_malformed_calls_and_lexical_errors(text: str, where: str, words: str) -> None:
    err = error(text)
    assert str(err.pos) == where and words in err.message, (err.pos, err.message)


def test_error_located_text_names_the_file() -> None:
    err = error("0 close(3\n")
    assert err.located("x.pkt") == "x.pkt:2:1: expected ')', found end of script"
    assert DrillError("cannot read").located("x.pkt") == "x.pkt: cannot read"
