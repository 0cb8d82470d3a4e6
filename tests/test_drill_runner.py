"""The synack backend and the runner around it: bad input becomes one clear verdict, never a
traceback; options, profiles, shell commands and code blocks; system calls with Linux's errno
values; the same script gives the same result every run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synack.drill.commands import plan_commands
from synack.drill.engine import FAIL, PASS, UNSUPPORTED, Outcome
from synack.drill.parser import parse
from synack.drill.profiles import BUILTIN, ProfileError, load_profile, parse_config_value
from synack.drill.runner import Request, ladder_records, make_settings, run_file

HANDSHAKE = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 65535 <mss 1000>
+0    > S. 0:0(0) ack 1 <mss 1460>
+0.1  < . 1:1(0) ack 1 win 65535
+0    accept(3, ..., ...) = 4
"""


def script(tmp_path: Path, text: str, name: str = "t.pkt") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def drill(tmp_path: Path, text: str, req: Request | None = None) -> Outcome:
    return run_file(script(tmp_path, text), req or Request())


# -- bad input -------------------------------------------------------------------------------------


def test_an_unreadable_file_fails_with_one_line(tmp_path: Path) -> None:
    out = run_file(str(tmp_path / "missing.pkt"), Request())
    assert out.verdict == FAIL and out.message.endswith("missing.pkt: No such file or directory")
    out = run_file(str(tmp_path), Request())
    assert out.verdict == FAIL and "cannot read" in out.message
    binary = tmp_path / "b.pkt"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8 text" in run_file(str(binary), Request()).message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    p = Path(script(tmp_path, HANDSHAKE))
    p.chmod(0)
    out = run_file(str(p), Request())
    assert out.verdict == FAIL and "Permission denied" in out.message


def test_a_syntax_error_is_a_failure_with_its_line(tmp_path: Path) -> None:
    out = drill(tmp_path, HANDSHAKE + "+0 > S. 0:0(0 ack 1\n")
    assert out.verdict == FAIL and out.line == 9 and out.message == "expected ')', found 'ack'"


def test_an_unknown_syscall_is_unsupported_before_anything_runs(tmp_path: Path) -> None:
    out = drill(tmp_path, HANDSHAKE + "+0 epoll_create(1) = 5\n")
    assert out.verdict == UNSUPPORTED and out.line == 9 and "epoll_create() is not supported" in out.message
    assert out.observations == []


@pytest.mark.parametrize(("line", "words"), [
    ("+0 setsockopt(4, IPPROTO_TCP, TCP_NOOPT, [1], 4) = 0", "TCP_NOOPT is not supported"),
    ("+0 setsockopt(4, IPPROTO_TCP, TCP_CONGESTION, [1], 4) = 0",
     "TCP_CONGESTION is not supported on synack"),
    ("+0 setsockopt(4, IPPROTO_TCP, TCP_FOO, [1], 4) = 0", "unknown symbol TCP_FOO"),
    ("+0 %{ assert tcpi_unacked == 0 }%", "tcpi_unacked is not available on synack"),
    ("+0 %{ import os }%", "code block uses Import"),
    ("+0 %{ open('x') }%", "calls a function the runner does not provide"),
    ("+0 `ip link set dev x down`", "in the middle of the script"),
])
def test_what_the_runner_cannot_do_is_unsupported_with_the_reason(tmp_path: Path, line: str,
                                                                  words: str) -> None:
    out = drill(tmp_path, HANDSHAKE + line + "\n+0 close(4) = 0\n")
    assert out.verdict == UNSUPPORTED and words in out.message, out.message


def test_an_unknown_option_is_unsupported(tmp_path: Path) -> None:
    out = drill(tmp_path, "--so_filename=x.so\n" + HANDSHAKE)
    assert out.verdict == UNSUPPORTED and out.line == 1 and "option --so_filename" in out.message
    out = drill(tmp_path, "--ip_version=ipv4-mapped-ipv6\n" + HANDSHAKE)
    assert out.verdict == UNSUPPORTED


def test_a_script_that_would_block_for_ever_fails_at_once(tmp_path: Path) -> None:
    out = drill(tmp_path, HANDSHAKE + "+0 read(4, ..., 100) = 100\n")
    assert out.verdict == FAIL and out.line == 9
    assert "blocks for ever: nothing is left to happen" in out.message
    assert out.seconds < 1


def test_the_time_cap_stops_a_script_that_keeps_timers_running(tmp_path: Path) -> None:
    text = HANDSHAKE + ("+0 setsockopt(4, SOL_SOCKET, SO_KEEPALIVE, [1], 4) = 0\n"
                        "+0 setsockopt(4, IPPROTO_TCP, TCP_KEEPIDLE, [1], 4) = 0\n"
                        "+0 setsockopt(4, IPPROTO_TCP, TCP_KEEPINTVL, [1], 4) = 0\n"
                        "+0 setsockopt(4, IPPROTO_TCP, TCP_KEEPCNT, [127], 4) = 0\n"
                        "+0 read(4, ..., 100) = 100\n")
    out = run_file(script(tmp_path, text), Request(options=(("time_cap", "30"),)))
    assert out.verdict == FAIL and "time cap of 30 s reached" in out.message
    assert out.script_time < 32


def test_a_bad_script_does_not_stop_the_others(tmp_path: Path) -> None:
    good = script(tmp_path, HANDSHAKE, "good.pkt")
    bad = script(tmp_path, "0 < garbage\n", "bad.pkt")
    assert [run_file(p, Request()).verdict for p in (bad, good, bad)] == [FAIL, PASS, FAIL]


# -- the synack backend ----------------------------------------------------------------------------


def test_the_same_script_gives_the_same_result_every_run(tmp_path: Path) -> None:
    text = HANDSHAKE + "+0 write(4, ..., 3000) = 3000\n+0 > . 1:1001(1000) ack 1\n"
    first = drill(tmp_path, text)
    assert first.verdict == FAIL
    again = [drill(tmp_path, text) for _ in range(3)]
    assert {(o.message, o.happened, o.script_time) for o in again} == {(first.message, first.happened,
                                                                       first.script_time)}


def test_a_failure_can_be_drawn_from_the_records_of_a_second_run(tmp_path: Path) -> None:
    p = script(tmp_path, HANDSHAKE + "+0 close(4) = 0\n+0 > . 1:1(0) ack 1\n")
    out = run_file(p, Request())
    assert out.verdict == FAIL and "flags F., expected ." in out.message
    records = ladder_records(p, Request())
    from synack.drill.report import ladder_of
    from synack.render import ladder_text

    text = ladder_text(ladder_of(records, "synack"))
    assert "FIN-WAIT-1" in text and "<SEQ=1><ACK=1><CTL=FIN,ACK>" in text


def test_errno_values_are_linuxs(tmp_path: Path) -> None:
    out = drill(tmp_path, "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                          "+0 read(3, ..., 10) = -1 ENOTCONN (Transport endpoint is not connected)\n"
                          "+0 write(3, ..., 10) = -1 EPIPE (Broken pipe)\n"
                          "+0 accept(3, ..., ...) = -1 EINVAL (Invalid argument)\n"
                          "+0 close(7) = -1 EBADF (Bad file descriptor)\n"
                          "+0 shutdown(3, SHUT_WR) = -1 ENOTCONN (Transport endpoint is not connected)\n")
    assert out.verdict == PASS, out.message


def test_a_wrong_result_or_errno_is_a_failure(tmp_path: Path) -> None:
    out = drill(tmp_path, "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 read(3, ..., 10) = 0\n")
    assert out.verdict == FAIL and out.message == "read() returned -1 ENOTCONN, expected 0"
    out = drill(tmp_path, "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 read(3, ..., 10) = -1 EAGAIN\n")
    assert out.verdict == FAIL and out.message == "read() errno ENOTCONN, expected EAGAIN"


def test_file_descriptors_are_names(tmp_path: Path) -> None:
    out = drill(tmp_path, "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 7\n+0 close(7) = 0\n"
                          "+0 close(3) = -1 EBADF\n")
    assert out.verdict == PASS, out.message


LISTENER = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
"""
ARRIVES = ("+0.5  < S 0:0(0) win 65535 <mss 1000>\n+0 > S. 0:0(0) ack 1 <mss 1460>\n"
           "+0 < . 1:1(0) ack 1 win 65535\n")


def test_a_blocking_call_without_an_end_that_blocks_fails(tmp_path: Path) -> None:
    out = drill(tmp_path, LISTENER + "+0 accept(3, ..., ...) = 4\n" + ARRIVES)
    assert out.verdict == FAIL and "blocks for ever" in out.message
    out = drill(tmp_path, LISTENER + "+0...0.5 accept(3, ..., ...) = 4\n" + ARRIVES)
    assert out.verdict == PASS, out.message


def test_a_blocking_call_must_return_at_its_end(tmp_path: Path) -> None:
    early = drill(tmp_path, LISTENER + "+0...0.9 accept(3, ..., ...) = 4\n" + ARRIVES)
    assert early.verdict == FAIL and "accept() returned at 0.500, expected in [0.787, 1.012]" in early.message
    never = drill(tmp_path, LISTENER + "+0...0.5 accept(3, ..., ...) = 4\n")
    assert never.verdict == FAIL and "did not return by 0.562" in never.message


def test_a_call_while_another_blocks_is_a_failure(tmp_path: Path) -> None:
    out = drill(tmp_path, HANDSHAKE + "+0...1 read(4, ..., 10) = 10\n+0.1 close(3) = 0\n")
    assert out.verdict == FAIL and "the blocking read() of line 9 has not returned by line 10" in out.message


def test_code_blocks_see_tcp_info(tmp_path: Path) -> None:
    ok = drill(tmp_path, HANDSHAKE + "+0 %{\nassert tcpi_state == TCP_ESTABLISHED\n"
                                     "assert tcpi_snd_mss == 1000\nassert 0 < tcpi_rto <= 1000000\n}%\n")
    assert ok.verdict == PASS, ok.message
    bad = drill(tmp_path, HANDSHAKE + "+0 %{ assert tcpi_state == TCP_CLOSE_WAIT, 'not yet' }%\n")
    assert bad.verdict == FAIL
    assert bad.message == ("assertion failed: tcpi_state == TCP_CLOSE_WAIT (not yet); "
                           "tcpi_state = 1 (TCP_ESTABLISHED)")


# -- options, profiles, commands -------------------------------------------------------------------


def test_option_precedence_profile_command_line_script() -> None:
    profile = BUILTIN["relaxed"]
    req = Request(profile=profile, options=(("tolerance_usecs", "9000"),))
    s = make_settings(parse("0 close(3) = 0\n"), req)
    assert s.tolerance_usecs == 9000 and s.profile == "relaxed" and not s.checks.windows
    s = make_settings(parse("--tolerance_usecs=1000\n0 close(3) = 0\n"),
                      Request(options=(("tolerance_usecs", "9000"),)))
    assert s.tolerance_usecs == 1000
    v6 = make_settings(parse("--ip_version=ipv6\n0 close(3) = 0\n"), Request())
    assert v6.local_addr == "fd3d:fa7b:d17d::1" and v6.remote_addr == "2001:db8::1"


def test_a_profile_file(tmp_path: Path) -> None:
    p = tmp_path / "linuxish.toml"
    p.write_text('checks = "relaxed"\n[config]\nrto_min = 0.2\ndelayed_ack = 0.04\n'
                 '[script]\ntolerance_usecs = 10000\ndefine = ["Linux"]\n'
                 '[linux.sysctl]\n"net.ipv4.tcp_early_retrans" = 0\n')
    prof = load_profile(str(p))
    assert prof.name == "linuxish" and not prof.checks.option_values and prof.defines == ("Linux",)
    cfg = prof.make_config()
    assert (cfg.rto_min, cfg.delayed_ack) == (0.2, 0.04)
    assert prof.sysctls == {"net.ipv4.tcp_early_retrans": "0"}


@pytest.mark.parametrize(("body", "words"), [
    ("checks = \"lenient\"\n", "checks must be"),
    ("[config]\nrto_minimum = 1\n", "rto_minimum is not a field"),
    ("[config]\ndelayed_ack = 0.7\n", "delayed_ack must be in"),
    ("colour = 1\n", "unknown key(s) colour"),
    ("checks = [\n", "cannot read profile"),
])
def test_bad_profiles_are_reported(tmp_path: Path, body: str, words: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(ProfileError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_profile(str(p))
    with pytest.raises(ProfileError, match="no profile"):
        load_profile("nonesuch")


def test_config_values_from_the_command_line() -> None:
    assert parse_config_value("rto_min", "0.2") == 0.2
    assert parse_config_value("mss", "1000") == 1000
    assert parse_config_value("timestamps", "off") is False
    assert parse_config_value("user_timeout", "none") is None
    with pytest.raises(ProfileError, match="not a float"):
        parse_config_value("rto_min", "fast")
    with pytest.raises(ProfileError, match="unknown Config field"):
        parse_config_value("iw", "10")


def test_the_profile_config_reaches_the_stack(tmp_path: Path) -> None:
    text = HANDSHAKE + "+0 %{ assert tcpi_rto == 300000 }%\n"
    assert drill(tmp_path, text).verdict == FAIL  # RFC 6298: at least 1 s
    fast = drill(tmp_path, text, Request(config={"rto_min": 0.2}))
    assert fast.verdict == PASS, fast.message


def test_sysctls_map_onto_config_and_other_commands_are_skipped_at_the_edges() -> None:
    s = parse("`sysctl -q net.ipv4.tcp_timestamps=0; sysctl -w net.ipv4.tcp_early_retrans=0`\n"
              "`../common/defaults.sh`\n0 close(3) = 0\n`echo done`\n")
    plan = plan_commands(s, "synack")
    assert plan.config == {"timestamps": False}
    assert any("defaults.sh" in n for n in plan.skipped) and any("echo done" in n for n in plan.skipped)
    linux = plan_commands(s, "linux")
    assert linux.sysctls == [("net.ipv4.tcp_timestamps", "0"), ("net.ipv4.tcp_early_retrans", "0")]


def test_a_sysctl_synack_cannot_honour_is_unsupported(tmp_path: Path) -> None:
    out = drill(tmp_path, "`sysctl -q net.ipv4.tcp_syn_retries=2`\n" + HANDSHAKE)
    assert out.verdict == UNSUPPORTED and "tcp_syn_retries=2 has no synack equivalent" in out.message
    mapped = drill(tmp_path, "`sysctl -q net.ipv4.tcp_timestamps=0`\n" + HANDSHAKE.replace(
        "<mss 1000>", "<mss 1000,TS val 1 ecr 0>"))
    assert mapped.verdict == PASS, mapped.message  # no TS in the SYN,ACK: timestamps are off
    assert mapped.notes == ["line 1: sysctl net.ipv4.tcp_timestamps=0 -> Config.timestamps=False"]


def test_the_backend_defines_its_name(tmp_path: Path) -> None:
    text = "#ifdef synack\n0 close(3) = -1 EBADF\n#endif\n#ifdef Linux\n0 nonsense\n#endif\n"
    assert drill(tmp_path, text).verdict == PASS
