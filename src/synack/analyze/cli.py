"""``synack analyze FILE...``: the command line.

Exit status: 0 when the capture was analysed, 2 (with one line on standard error, never a
traceback) when it could not be — or only in part: a damaged file is analysed up to the damage,
its results are printed, and the status is still 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from synack.analyze.engine import Options
from synack.analyze.model import ConnectionResult
from synack.analyze.run import AnalyzeError, Summary, analyze

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``analyze`` subcommand."""
    p = subparsers.add_parser(
        "analyze",
        help="what every TCP connection in a capture did: both ends' states, Zeek, Wireshark, findings",
        description=(
            "Read pcap/pcapng captures and report every TCP connection: both ends' RFC 9293 states over "
            "time (uncertain ones marked ?), Zeek's conn_state and history, Wireshark's analysis flags, "
            "tcptrace's statistics, and findings in plain words (CLOSE-WAIT leaks, TIME-WAIT, half-open "
            "connections, RST after data, unanswered SYNs, floods and scans, zero windows, long "
            "retransmission chains)."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="pcap or pcapng files ('-' reads standard input)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON document (one object per connection)")
    out.add_argument("--csv", action="store_true", help="print a CSV table, one row per connection")
    p.add_argument(
        "--conn", type=int, metavar="ID", help="draw connection ID (its tcp.stream number) as a ladder"
    )
    p.add_argument(
        "--html", metavar="FILE", help="write an HTML report (with --conn: that connection's ladder)"
    )
    p.add_argument(
        "--msl",
        type=float,
        default=30.0,
        metavar="S",
        help="the MSL to assume for TIME-WAIT (2×MSL; default 30 s, Linux's 60 s TIME-WAIT)",
    )
    p.add_argument(
        "--attempt-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="a connection attempt that never completed its handshake and shows nothing for S seconds "
        "is over: its result is given then, and what follows on its 4-tuple is a new connection "
        "(default 120: Linux gives up on a SYN after 127 s; 0: keep every attempt to the end)",
    )
    p.add_argument(
        "--local",
        action="append",
        default=[],
        metavar="ADDR",
        help="an address of the capturing host (repeatable): its end's arrivals are certain",
    )
    p.add_argument(
        "--checksums",
        choices=("sample", "all", "off"),
        default="sample",
        help="verify TCP checksums of control segments and each direction's first packets (sample, "
        "the default), of every packet (all), or none",
    )
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="split the work by flow over N processes")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run sharded by flow on the Dask cluster at ADDRESS ('local': a local cluster)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on standard error (default: when it is a terminal)",
    )
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour the summary")
    p.add_argument("--findings", type=int, default=20, metavar="N", help="findings shown in the summary")
    p.set_defaults(handler=run)


def _options(args: argparse.Namespace) -> Options:
    if args.msl <= 0:
        raise AnalyzeError("--msl must be positive")
    if args.jobs < 1:
        raise AnalyzeError("--jobs must be at least 1")
    if not args.attempt_timeout >= 0:  # (a NaN fails too)
        raise AnalyzeError("--attempt-timeout must be 0 (never) or a positive number of seconds")
    if args.conn is not None:
        keep: frozenset[int] | None = frozenset({args.conn})
        per_conn = 100_000
    elif args.html:
        keep, per_conn = None, 1000
    else:
        keep, per_conn = frozenset(), 0
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    for addr in args.local:
        try:
            import ipaddress

            ipaddress.ip_address(addr)
        except ValueError:
            raise AnalyzeError(f"--local {addr}: not an IP address") from None
    return Options(
        msl=args.msl,
        attempt_timeout=args.attempt_timeout or None,
        local=tuple(args.local),
        checksums=args.checksums,
        keep=keep,
        keep_packets=per_conn,
        progress=progress and args.jobs == 1 and not args.dask,
    )


def run(args: argparse.Namespace) -> int:
    """The ``analyze`` handler."""
    try:
        options = _options(args)
    except AnalyzeError as exc:
        print(f"synack analyze: error: {exc}", file=sys.stderr)
        return 2
    sources = [_source(f) for f in args.files]
    collected: list[ConnectionResult] = []
    with _outputs(args) as (sinks, close):
        if args.conn is not None or args.html:
            sinks.append(_collector(collected, args))
        summary, error = _analyze(sources, options, sinks, args)
        if summary is not None:
            close(summary)
    if summary is not None and summary.capture.tcp:
        status = _report(args, summary, collected)
        if status:
            return status
    if error:
        print(f"synack analyze: error: {error}", file=sys.stderr)
        return 2
    return 0


def _source(name: str) -> Any:
    return sys.stdin.buffer if name == "-" else name


def _analyze(
    sources: list[Any],
    options: Options,
    sinks: list[Callable[[ConnectionResult], None]],
    args: argparse.Namespace,
) -> tuple[Summary | None, str]:
    try:
        if args.dask:
            from synack.analyze.parallel import analyze_dask

            return analyze_dask(sources, options, args.dask, sinks), ""
        if args.jobs > 1:
            from synack.analyze.parallel import analyze_jobs

            return analyze_jobs(sources, options, args.jobs, sinks), ""
        return analyze(sources, options, sinks), ""
    except AnalyzeError as exc:
        summary = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Summary) else None
        return summary, str(exc.args[0])


def _collector(
    collected: list[ConnectionResult], args: argparse.Namespace
) -> Callable[[ConnectionResult], None]:
    limit = 1 if args.conn is not None else 500

    def keep(r: ConnectionResult) -> None:
        if args.conn is not None:
            if r.id == args.conn:
                collected.append(r)
        elif len(collected) < limit:
            collected.append(r)
        else:
            from synack.analyze.run import _slim

            collected.append(_slim(r))

    return keep


@contextlib.contextmanager
def _outputs(
    args: argparse.Namespace,
) -> Iterator[tuple[list[Callable[[ConnectionResult], None]], Callable[[Summary], None]]]:
    from synack.analyze.output import CsvSink, JsonSink

    out: IO[str] = sys.stdout
    if args.json and args.conn is None:
        sink = JsonSink(out)
        yield [sink], sink.close
    elif args.csv and args.conn is None:
        yield [CsvSink(out)], lambda _s: None
    else:
        yield [], lambda _s: None
    out.flush()


def _report(args: argparse.Namespace, summary: Summary, collected: list[ConnectionResult]) -> int:
    from synack.analyze.output import print_summary

    if args.conn is not None:
        return _one_connection(args, collected)
    if args.html:
        from synack.analyze.report import report_page

        if not _write(args.html, report_page(summary, collected)):
            return 2
        print(f"synack analyze: wrote the report to {args.html}", file=sys.stderr)
    if not args.json and not args.csv:
        color = {"always": True, "never": False}.get(args.color)
        if color is None:
            color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        print_summary(summary, sys.stdout, color=color, findings_shown=args.findings)
    return 0


def _one_connection(args: argparse.Namespace, collected: list[ConnectionResult]) -> int:
    from synack.analyze.ladder import ladder_page, ladder_text_of

    if not collected:
        print(
            f"synack analyze: error: no connection {args.conn} in the capture (ids are Wireshark's "
            "tcp.stream numbers, from 0)",
            file=sys.stderr,
        )
        return 2
    r = collected[0]
    if args.html:
        if not _write(args.html, ladder_page(r)):
            return 2
        print(f"synack analyze: wrote connection {r.id}'s ladder to {args.html}", file=sys.stderr)
    elif args.json:
        import json

        print(json.dumps(r.to_dict(), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(ladder_text_of(r))
    return 0


def _write(path: str, text: str) -> bool:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        print(f"synack analyze: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True
