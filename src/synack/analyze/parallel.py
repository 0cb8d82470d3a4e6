"""The same analysis split by flow: ``--jobs N`` over N processes of this machine, ``--dask
ADDRESS`` over the workers of a Dask cluster (an optional dependency: ``pip install
'synack[dask]'``).

Every shard reads the whole capture and keeps the flows whose two endpoints hash to it (the hash
does not depend on the direction, so both halves of a connection meet in one shard). Each shard
returns its :class:`~synack.analyze.run.Summary` and its results; the summaries merge (counts
add, the worst connections and the findings combine), and the results are numbered again by
their first frame — Wireshark's ``tcp.stream`` order — before they reach the sinks. To number
them, the parent holds one result per connection (without their packets, unless a ladder or a
report needs them). A Dask worker must be able to open the capture files by the same path.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import os
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from synack.analyze.engine import Options
from synack.analyze.model import ConnectionResult, Finding
from synack.analyze.run import AnalyzeError, Summary, analyze

__all__ = ["analyze_dask", "analyze_jobs", "shard_of"]

Sink = Callable[[ConnectionResult], None]
_BEFORE_SHARDING = (
    "frames",
    "not_ip",
    "not_tcp",
    "fragments",
    "damaged",
    "damaged_examples",
    "unknown_linktypes",
    "first",
    "last",
    "error",
)


def shard_of(key: bytes, shards: int) -> int:
    """The shard of a flow table key (source address, destination address, source port,
    destination port), the same for both directions."""
    n = 16 if len(key) > 12 else 4
    a = key[:n] + key[2 * n : 2 * n + 2]
    b = key[n : 2 * n] + key[2 * n + 2 : 2 * n + 4]
    return zlib.crc32(a + b if a < b else b + a) % shards


class _Shard:
    """A picklable shard filter."""

    def __init__(self, k: int, n: int) -> None:
        self.k, self.n = k, n

    def __call__(self, key: bytes) -> bool:
        return shard_of(key, self.n) == self.k


def run_shard(
    paths: Sequence[str], options: Options, k: int, n: int
) -> tuple[Summary, list[ConnectionResult], str]:
    """Analyse shard ``k`` of ``n``: its summary, its results, and the error, if any."""
    results: list[ConnectionResult] = []
    opts = dataclasses.replace(options, progress=False, on_packet=None)
    try:
        summary = analyze(list(paths), opts, [results.append], shard=_Shard(k, n), require_tcp=False)
        return summary, results, ""
    except AnalyzeError as exc:
        summary = exc.args[1] if len(exc.args) > 1 else Summary()
        return summary, results, str(exc.args[0])


def _merge(parts: list[tuple[Summary, list[ConnectionResult], str]], sinks: Sequence[Sink]) -> Summary:
    """Merge the shards' summaries, number the connections by their first frame, feed the sinks."""
    summary = Summary(sources=parts[0][0].sources, msl=parts[0][0].msl)
    first_capture = parts[0][0].capture
    for part, _results, _error in parts:
        summary.merge(part)
    for name in _BEFORE_SHARDING:  # counted by every shard before the flows were shared out
        setattr(summary.capture, name, getattr(first_capture, name))
    everything = sorted((r for _s, results, _e in parts for r in results), key=lambda r: (r.frames[0], r.id))
    renumber = {(id(r)): k for k, r in enumerate(everything)}
    summary.worst = []
    summary.findings = []
    summary.finding_counts.clear()
    for r in everything:
        new = _renumbered(r, renumber[id(r)])
        summary.finding_counts.update(f.kind for f in new.findings)
        summary.findings.extend(new.findings)
        _rank(summary, new)
        for sink in sinks:
            sink(new)
    errors = [e for _s, _r, e in parts if e]
    if errors:
        raise AnalyzeError(errors[0], summary)
    if summary.capture.tcp == 0:
        from synack.analyze.run import _no_tcp

        raise AnalyzeError(_no_tcp(summary.capture, summary.sources), summary)
    return summary


def _rank(summary: Summary, r: ConnectionResult) -> None:
    import heapq

    from synack.analyze.run import _slim

    if r.score > 0:
        item = (r.score, -r.id, _slim(r))
        if len(summary.worst) < 10:
            heapq.heappush(summary.worst, item)
        elif item[:2] > summary.worst[0][:2]:
            heapq.heapreplace(summary.worst, item)


def _renumbered(r: ConnectionResult, new_id: int) -> ConnectionResult:
    findings = tuple(
        Finding(
            **{
                **{f_.name: getattr(f, f_.name) for f_ in dataclasses.fields(f)},
                "connections": tuple(new_id if c == r.id else c for c in f.connections),
            }
        )
        for f in r.findings
    )
    return dataclasses.replace(r, id=new_id, findings=findings)


def _paths(sources: Sequence[Any]) -> list[str]:
    paths = []
    for s in sources:
        if not isinstance(s, (str, os.PathLike)):
            raise AnalyzeError("--jobs and --dask read files by name (not standard input)")
        paths.append(os.fspath(s))
    return paths


def analyze_jobs(sources: Sequence[Any], options: Options, jobs: int, sinks: Sequence[Sink] = ()) -> Summary:
    """``--jobs N``: N processes, one shard each. A worker that dies (killed, out of memory, a
    crash in C) is an :class:`AnalyzeError`, never a wait for ever (``multiprocessing.Pool``
    would wait for its result)."""
    paths = _paths(sources)
    ctx = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    try:
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            parts = list(pool.map(run_shard, [paths] * jobs, [options] * jobs, range(jobs), [jobs] * jobs))
    except BrokenProcessPool:
        raise AnalyzeError(f"--jobs {jobs}: a worker process died before it finished its shard "
                           "(killed, or out of memory); run without --jobs to see why") from None
    return _merge(parts, sinks)


def analyze_dask(
    sources: Sequence[Any],
    options: Options,
    address: str,
    sinks: Sequence[Sink] = (),
    shards: int | None = None,
) -> Summary:
    """``--dask ADDRESS``: one task per shard on the cluster at ``address`` (``local``: a local
    cluster of this machine's cores); as many shards as the cluster has worker threads."""
    try:
        distributed: Any = importlib.import_module("distributed")  # optional, and untyped
    except ImportError:
        raise AnalyzeError("--dask needs Dask: pip install 'synack[dask]'") from None
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
    paths = _paths(sources)
    cluster = None
    try:
        if address == "local":
            cluster = LocalCluster(
                n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = Client(cluster)
        else:
            client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise AnalyzeError(f"--dask {address}: cannot reach the cluster: {exc}") from None
    try:
        n = shards or max(sum(client.nthreads().values()), 1)
        futures = [client.submit(run_shard, paths, options, k, n, pure=False) for k in range(n)]
        parts = client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return _merge(list(parts), sinks)
