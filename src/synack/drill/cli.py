"""``synack drill``: run packetdrill scripts on synack's virtual clock, against the Linux kernel, or
both, and report (see :mod:`synack.drill` and ``docs/drill.md``).

Exit status: 0 when no script failed (UNSUPPORTED is not a failure), 1 when one did, 2 for a
usage error (an unknown profile, ``--against linux`` without root).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from synack.drill import report
from synack.drill.engine import FAIL, Outcome
from synack.drill.profiles import ProfileError, load_profile, parse_config_value
from synack.drill.runner import Request, ladder_records, run_file

__all__ = ["add_parser", "expand_paths", "main", "run_one"]

_SCRIPT_OPTIONS = ("tolerance_usecs", "tolerance_percent", "ip_version", "mss", "mtu", "bind_port",
                   "connect_port", "time_cap")


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``drill`` subcommand."""
    p = subparsers.add_parser(
        "drill",
        help="run packetdrill scripts on synack's virtual clock (or against Linux)",
        description=(
            "Run packetdrill scripts: the script plays the remote peer, injecting segments and "
            "making system calls, and states the segments the stack must send and when. By default "
            "the stack is synack on a virtual clock (no root, no TUN device, the same result every "
            "run); --against linux runs the kernel's TCP in a private network namespace; "
            "--against both runs the two and prints where they differ. Directories are searched "
            "for *.pkt files."),
    )
    p.add_argument("scripts", nargs="+", metavar="SCRIPT", help="script files (*.pkt) or directories")
    p.add_argument("--against", choices=("synack", "linux", "both"), default="synack",
                   help="the stack under test (default synack)")
    p.add_argument("--profile", default="strict", metavar="NAME|FILE",
                   help="strict (everything checked; default), relaxed (outbound window and option values "
                        "not checked) or a TOML profile file")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="set a synack.core.Config field (rto_min=0.2, delayed_ack=0.04, rcv_buf=65535 ...)")
    p.add_argument("-D", "--define", action="append", default=[], metavar="NAME[=VALUE]",
                   help="define NAME for #ifdef (repeatable)")
    for name in _SCRIPT_OPTIONS:
        p.add_argument(f"--{name}", metavar="VALUE", help="as the script option of that name")
    p.add_argument("--strict_segments", action="store_true", help="no TSO-style aggregation of segments")
    p.add_argument("--ladder", action="store_true", help="print the ladder diagram of every script, not only "
                                                         "of failures")
    p.add_argument("--html", metavar="FILE", help="write the ladder diagram(s) as an HTML page")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--json", action="store_true", help="print one JSON object per script instead of text")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="run N scripts in parallel processes")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    p.set_defaults(handler=main)


def expand_paths(paths: Sequence[str]) -> list[str]:
    """Files as given; directories searched (recursively, sorted) for ``*.pkt``."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                out.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".pkt"))
        else:
            out.append(p)
    return out


def _request(args: argparse.Namespace, backend: str) -> Request:
    profile = load_profile(args.profile)
    config: dict[str, Any] = {}
    for item in args.config:
        key, eq, value = item.partition("=")
        if not eq:
            raise ProfileError(f"--config {item!r}: expected KEY=VALUE")
        config[key.strip()] = parse_config_value(key.strip(), value.strip())
    profile.make_config(config)
    options: list[tuple[str, str | None]] = [(n, getattr(args, n)) for n in _SCRIPT_OPTIONS
                                             if getattr(args, n) is not None]
    if args.strict_segments:
        options.append(("strict_segments", None))
    defines = {}
    for d in args.define:
        key, _, value = d.partition("=")
        defines[key] = value
    return Request(backend, profile, config, tuple(options), defines)


def run_one(task: tuple[str, Request, bool]) -> tuple[Outcome, list[Any] | None]:
    """One script on one backend (a worker's job): the outcome, and the records of its ladder
    when a failure (or ``--ladder``/``--html``) needs one."""
    path, req, always = task
    records: list[Any] | None = [] if req.backend == "linux" else None
    out = run_file(path, req, records=records)
    if req.backend == "synack" and (always or out.verdict == FAIL) and out.observations:
        try:
            records = ladder_records(path, req)
        except Exception:  # the ladder is an aid; a script that broke the first run has its verdict
            records = None
    return out, records if (always or out.verdict == FAIL) and out.observations else None


def _results(tasks: list[tuple[str, Request, bool]], jobs: int) -> Iterator[tuple[Outcome, list[Any] | None]]:
    if jobs <= 1 or len(tasks) <= 1:
        yield from map(run_one, tasks)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(min(jobs, len(tasks))) as pool:
        yield from pool.imap(run_one, tasks)


def _linux_problem() -> str | None:
    if not sys.platform.startswith("linux"):
        return "--against linux runs only on Linux"
    if os.geteuid() != 0:
        return "--against linux needs root (a network namespace and a TUN device)"
    if not os.path.exists("/dev/net/tun"):
        return "--against linux needs /dev/net/tun"
    return None


def main(args: argparse.Namespace) -> int:
    """The ``drill`` subcommand's handler."""
    backends = ["synack", "linux"] if args.against == "both" else [args.against]
    if "linux" in backends and (problem := _linux_problem()) is not None:
        print(f"synack drill: {problem}", file=sys.stderr)
        return 2
    try:
        reqs = [_request(args, b) for b in backends]
    except ProfileError as exc:
        print(f"synack drill: {exc}", file=sys.stderr)
        return 2
    paths = expand_paths(args.scripts)
    if not paths:
        print("synack drill: no *.pkt scripts found", file=sys.stderr)
        return 2
    always = bool(args.ladder or args.html)
    tasks = [(p, r, always) for p in paths for r in reqs]
    # The kernel runs one script at a time: its timing is real, and parallel runs would disturb it.
    jobs = 1 if "linux" in backends else args.jobs
    outcomes: list[Outcome] = []
    pages: list[tuple[Outcome, list[Any]]] = []
    by_path: dict[str, list[Outcome]] = {}
    for out, records in _results(tasks, jobs):
        outcomes.append(out)
        by_path.setdefault(out.path, []).append(out)
        if records is not None and (args.html and (out.verdict == FAIL or len(paths) == 1 or args.ladder)):
            pages.append((out, records))
        _print_one(args, out, records)
        if len(backends) == 2 and len(by_path[out.path]) == 2:
            _print_diff(args, *by_path[out.path])
    _finish(args, outcomes, pages)
    return 1 if any(o.verdict == FAIL for o in outcomes) else 0


def _print_one(args: argparse.Namespace, out: Outcome, records: list[Any] | None) -> None:
    if args.json:
        print(json.dumps(report.outcome_json(out)), flush=True)
    elif not (args.quiet and out.verdict != FAIL):
        print(report.text_report(out, records, ladder=args.ladder), flush=True)


def _print_diff(args: argparse.Namespace, a: Outcome, b: Outcome) -> None:
    diff = report.compare_runs(a, b)
    if args.json:
        print(json.dumps({"path": a.path, "differences": diff}), flush=True)
    elif diff:
        print(f"DIFFERS     {a.path}  ({a.backend} vs {b.backend})")
        print("\n".join(diff), flush=True)
    else:
        print(f"SAME        {a.path}  ({a.backend} and {b.backend} did the same)", flush=True)


def _finish(args: argparse.Namespace, outcomes: list[Outcome],
            pages: list[tuple[Outcome, list[Any]]]) -> None:
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(report.junit_xml(outcomes))
    if args.html:
        if pages:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(report.html_page(pages))
        else:
            print(f"synack drill: no ladder to draw in {args.html} (every script passed; add --ladder)",
                  file=sys.stderr)
    summary = report.summary_line(outcomes)
    if args.json:
        print(json.dumps({"summary": summary}))
    else:
        print(summary)
