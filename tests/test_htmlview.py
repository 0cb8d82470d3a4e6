"""The HTML ladder view of a simulated run: one arrow per segment (lost ones stop half-way), the
states of both ends, a detail panel, and a page that works on its own in a real browser."""

from __future__ import annotations

import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from synack.core.connection import Config
from synack.core.records import State
from synack.htmlview import UNIT_PX, render_html
from synack.sim import Network, segment_is
from synack.trace import Trace

CHROMIUM = "/usr/bin/chromium"
SVG = "{http://www.w3.org/2000/svg}"
TITLE = "Handshake, data with one lost segment, close"
EXPLANATION = (
    "The client opens the connection with the three-way handshake and sends \"hello\" and then "
    "\"world!\". The segment carrying \"world!\" is lost; nothing acknowledges it, so the client's "
    "retransmission timer sends it again a second later.\n\n"
    "The client then closes first: FIN-WAIT-1, and FIN-WAIT-2 once its FIN is acknowledged. The server "
    "reads the end of the stream (CLOSE-WAIT), sends \"bye\" together with its own FIN (LAST-ACK) and is "
    "done when that FIN is acknowledged. The client, the side that closed first, waits 2×MSL in "
    "TIME-WAIT (2 s with the lab's MSL of 1 s) before the connection is gone.")


def lossy_lifecycle() -> Trace:
    """Handshake, "hello" and "world!" from the client (the segment with "world!" is lost once
    and retransmitted), the client closes, the server sends "bye" and closes, TIME-WAIT expires."""
    tr = Trace()
    net = Network(seed=0, trace=tr)
    a = net.add_host("client", "10.0.0.1", config=Config.lab())
    b = net.add_host("server", "10.0.0.2", config=Config.lab())
    net.link(a, b, delay=0.01)
    lst = b.listen(80)
    net.drop_nth(2, segment_is("ACK", data=True), direction=("client", "server"))
    c = a.connect("10.0.0.2", 80, net.now)
    assert net.run_until(lambda: lst.pending > 0, limit=30)
    s = lst.accept()
    assert s is not None
    c.send(b"hello", net.now)
    net.run(net.now + 0.05)
    c.send(b"world!", net.now)
    assert net.run_until(lambda: s.readable == 11, limit=30)
    assert s.receive(100, net.now) == b"helloworld!"
    c.close(net.now)
    assert net.run_until(lambda: s.at_eof, limit=30)
    s.send(b"bye", net.now)
    s.close(net.now)
    net.run()
    assert c.state is State.CLOSED and s.state is State.CLOSED
    return tr


@pytest.fixture(scope="module")
def trace() -> Trace:
    return lossy_lifecycle()


def page_of(trace: Trace, *, relative: bool = False) -> str:
    return render_html(trace, "client", "server", title=TITLE, explanation=EXPLANATION, relative=relative)


def svg_root(page: str) -> ET.Element:
    """The inline <svg> of the page, parsed as XML (it must be well-formed)."""
    start, end = page.index("<svg"), page.index("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])


def arrows(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "segment"]


def state_labels(root: ET.Element, host: str) -> list[str]:
    return [g.get("data-state", "") for g in root.iter(f"{SVG}g")
            if g.get("class") == "state" and g.get("data-host") == host]


def label_text(g: ET.Element) -> str:
    (text,) = [t for t in g.iter(f"{SVG}text") if t.get("class") == "seg-label"]
    return text.text or ""


# ---------------------------------------------------------------------------------------------
# The SVG, parsed as XML
# ---------------------------------------------------------------------------------------------


def test_one_arrow_per_segment_in_order(trace: Trace) -> None:
    lines = list(trace.segments())
    root = svg_root(page_of(trace))
    drawn = arrows(root)
    assert len(drawn) == len(lines) == len(trace.packets("send"))
    for g, line in zip(drawn, lines, strict=True):
        seg = line.packet.seg
        assert g.get("data-src") == line.src and g.get("data-dst") == line.dst
        assert g.get("data-flags") == ",".join(n for n in seg.ctl().split(",") if n)
        assert g.get("data-seq") == str(seg.seq)
        assert g.get("data-ack") == ("" if seg.ack is None else str(seg.ack))
        assert g.get("data-len") == str(len(seg.payload))
        assert float(g.get("data-t", "nan")) == pytest.approx(line.t)


def test_the_lost_segment_stops_half_way_with_a_cross(trace: Trace) -> None:
    root = svg_root(page_of(trace))
    drawn = arrows(root)
    lost = [g for g in drawn if g.get("data-fate") == "lost"]
    dropped = [line for line in trace.segments() if line.fate.status == "dropped"]
    assert len(lost) == len(dropped) == 1
    (g,) = lost
    assert g.get("data-reason") == "scripted" and g.get("data-len") == "6"
    assert g.get("data-flags") == "PSH,ACK"
    wire = next(ln for ln in g.iter(f"{SVG}line") if ln.get("class") == "wire")
    # Where the delivered arrows start and end: the two lifelines.
    xs = sorted({float(ln.get(k, "nan")) for d in drawn if d.get("data-fate") == "delivered"
                 for ln in d.iter(f"{SVG}line") if ln.get("class") == "wire" for k in ("x1", "x2")})
    assert len(xs) == 2
    assert float(wire.get("x1", "nan")) == xs[0]  # sent by the client, on the left
    assert float(wire.get("x2", "nan")) == pytest.approx((xs[0] + xs[1]) / 2)
    assert wire.get("marker-end") is None and wire.get("stroke-dasharray")
    assert any(p.get("class") == "x-mark" for p in g.iter(f"{SVG}path"))
    texts = [t.text for t in g.iter(f"{SVG}text")]
    assert "lost (scripted)" in texts
    # It was sent again: the retransmission arrives, and says what it is.
    again = [d for d in drawn if d.get("data-retransmission")]
    assert len(again) == 1 and again[0].get("data-seq") == g.get("data-seq")
    assert again[0].get("data-fate") == "delivered"
    assert "(retransmission)" in label_text(again[0])


def test_state_labels_for_every_state_each_host_went_through(trace: Trace) -> None:
    root = svg_root(page_of(trace))
    for host in ("client", "server"):
        (timeline,) = trace.states(host).values()
        assert state_labels(root, host) == [r.new for r in timeline]
    assert state_labels(root, "client") == ["SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
                                            "TIME-WAIT", "CLOSED"]
    assert state_labels(root, "server") == ["LISTEN", "SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT",
                                            "LAST-ACK", "CLOSED"]
    # Each label sits at the moment of its change, beside its own host's column.
    states = [g for g in root.iter(f"{SVG}g") if g.get("class") == "state"]
    xs: dict[str, set[float]] = {"client": set(), "server": set()}
    for g in states:
        xs[g.get("data-host", "")].update(float(t.get("x", "nan")) for t in g.iter(f"{SVG}text"))
    assert len(xs["client"]) == len(xs["server"]) == 1 and max(xs["client"]) < min(xs["server"])
    for host in ("client", "server"):
        ys = [float(next(g.iter(f"{SVG}line")).get("y1", "nan"))
              for g in states if g.get("data-host") == host]
        assert ys == sorted(ys)


def test_labels_like_the_rfc_figures(trace: Trace) -> None:
    rel = [label_text(g) for g in arrows(svg_root(page_of(trace, relative=True)))]
    assert rel[:4] == ["SYN seq=0", "SYN,ACK seq=0 ack=1", "ACK seq=1 ack=1", "PSH,ACK seq=1 ack=1 len=5"]
    assert "FIN,ACK seq=12 ack=1" in rel  # 1 + 5 + 6 octets of data: the FIN is octet 12
    assert rel[-1] == "ACK seq=13 ack=5"  # the server's FIN came after 3 octets: 1 + 3 + 1
    absolute = [label_text(g) for g in arrows(svg_root(page_of(trace)))]
    isn = next(trace.segments()).packet.seg.seq
    assert absolute[0] == f"SYN seq={isn}"


def test_time_flows_down_and_long_pauses_are_cut(trace: Trace) -> None:
    root = svg_root(page_of(trace))
    wires = [(g, next(ln for ln in g.iter(f"{SVG}line") if ln.get("class") == "wire")) for g in arrows(root)]
    starts = [float(w.get("y1", "nan")) for _, w in wires]
    assert starts == sorted(starts)
    for g, w in wires:
        assert float(w.get("y2", "nan")) > float(w.get("y1", "nan")), g.get("data-i")
    # Every delivered arrow here takes the same 10 ms, so they all slant alike: UNIT_PX down,
    # or a little more where labels at one instant need the room.
    drops = [float(w.get("y2", "nan")) - float(w.get("y1", "nan"))
             for g, w in wires if g.get("data-fate") == "delivered"]
    assert all(UNIT_PX <= d <= 1.5 * UNIT_PX for d in drops), drops
    assert sum(d == UNIT_PX for d in drops) > len(drops) / 2
    # The retransmission timeout (about 1 s) and TIME-WAIT (2 s) are breaks, not 50 screens.
    gaps = [float(g.get("data-seconds", "nan")) for g in root.iter(f"{SVG}g") if g.get("class") == "gap"]
    assert len([s for s in gaps if s > 0.9]) == 2
    assert float(root.get("height", "inf")) < 1200


def test_details_hold_every_field(trace: Trace) -> None:
    page = page_of(trace)
    blob = re.search(r'<script type="application/json" id="segment-data">(.*?)</script>', page, re.S)
    assert blob is not None
    details = json.loads(blob.group(1))
    assert len(details) == len(list(trace.segments()))
    fields = [dict(d["rows"]) for d in details]
    for f in fields:
        for key in ("from", "to", "sent at", "flags", "sequence number", "acknowledgment number", "window",
                    "options", "payload length", "checksum", "header length", "urgent pointer", "tcpdump"):
            assert key in f, key
        assert "arrived at" in f or "lost" in f
        assert f["checksum"].endswith("(correct)")
    syn = fields[0]
    assert syn["from"].startswith("client 10.0.0.1 port ") and syn["to"] == "server 10.0.0.2 port 80"
    assert "MSS 1460" in syn["options"] and "window scale" in syn["options"]
    assert syn["acknowledgment number"].startswith("none")
    lost = next(f for f in fields if "lost" in f)
    assert lost["lost"].endswith("scripted") and lost["payload"] == '"world!"'


def test_page_is_self_contained_with_explanation_and_table(trace: Trace) -> None:
    page = page_of(trace)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<link|<img|<iframe|@import|<script[^>]*\ssrc=", page, re.I)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) == {"http://www.w3.org/2000/svg"}
    assert all(u.startswith("url(#") for u in re.findall(r"url\([^)]*\)", page))
    assert "<title>" + TITLE + "</title>" in page
    assert page.count("<section class=\"explanation\"><h2>What happens</h2><p>") == 1
    assert "&quot;world!&quot;" in page  # the explanation, escaped, in two paragraphs
    assert "<p>The client then closes first" in page
    tricky = render_html(trace, "client", "server", title="a <b> & c", explanation="x </script> <i>y</i>")
    assert "<title>a &lt;b&gt; &amp; c</title>" in tricky and "<i>y</i>" not in tricky
    assert page.count('<tr class="segrow') == len(list(trace.segments()))
    assert page.count('<tr class="segrow lost"') == 1


def test_many_faults_still_one_arrow_per_copy() -> None:
    """Duplicates, reordering, corruption, jitter and random loss: every copy is one arrow."""
    tr = Trace()
    net = Network(seed=5, trace=tr)
    a = net.add_host("A", "2001:db8::1", config=Config.lab())
    b = net.add_host("B", "2001:db8::2", config=Config.lab())
    net.link(a, b, delay=0.005, jitter=0.002, loss=0.1, duplicate=0.2, reorder=0.1, corrupt=0.1)
    lst = b.listen(80)
    c = a.connect("2001:db8::2", 80, 0.0)
    assert net.run_until(lambda: lst.pending > 0, limit=60)
    s = lst.accept()
    assert s is not None
    c.send(bytes(range(256)) * 40, net.now)
    assert net.run_until(lambda: s.readable >= 10240, limit=120)
    net.run(net.now + 5)
    lines = list(tr.segments())
    root = svg_root(render_html(tr, "A", "B", title="faults"))
    drawn = arrows(root)
    assert len(drawn) == len(lines)
    assert sorted(g.get("data-reason", "") for g in drawn if g.get("data-fate") == "lost") == \
        sorted(ln.fate.reason for ln in lines if ln.fate.status == "dropped")
    assert sum(bool(g.get("data-copy")) for g in drawn) == len(tr.packets("duplicate")) > 0
    assert any(g.get("data-reason", "").startswith("corrupt") for g in drawn)
    assert any(g.get("data-reason") == "loss" for g in drawn)


def test_edge_cases() -> None:
    with pytest.raises(ValueError):
        render_html(Trace(), "A", "A", title="x")
    root = svg_root(render_html(Trace(), "A", "B", title="nothing happened"))
    assert arrows(root) == []
    # A third host's traffic is not drawn between the other two.
    tr = Trace()
    net = Network(seed=1, trace=tr)
    a, b, x = (net.add_host(n, f"10.0.0.{i}", config=Config.lab()) for i, n in enumerate("ABX", 1))
    net.link(a, b, delay=0.0)  # no delay at all: arrows are flat, nothing divides by zero
    net.link(a, x, delay=0.002)
    b.listen(80)
    x.listen(81)
    a.connect("10.0.0.2", 80, 0.0)
    a.connect("10.0.0.3", 81, 0.0)
    net.run(1.0)
    ab = arrows(svg_root(render_html(tr, "A", "B", title="A-B")))
    ax = arrows(svg_root(render_html(tr, "A", "X", title="A-X")))
    assert len(ab) == len(ax) == 3 and len(ab) + len(ax) == len(tr.packets("send"))
    assert {g.get("data-dst") for g in ab} == {"A", "B"} and {g.get("data-dst") for g in ax} == {"A", "X"}


# ---------------------------------------------------------------------------------------------
# In a real browser
# ---------------------------------------------------------------------------------------------


def chromium(tmp: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, isolated in ``tmp``, with no network of its own; at most 30 s."""
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run scripts/setup-system.sh"
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(tmp))
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=2000", *args],
        capture_output=True, text=True, timeout=30, check=True, env=env)


class DomCounter(HTMLParser):
    """Counts segment arrows and state labels in a dumped DOM, and reads the summary and the
    detail panel."""

    def __init__(self) -> None:
        super().__init__()
        self.segments = 0
        self.selected: list[str] = []
        self.states: list[tuple[str, str]] = []
        self.summary = ""
        self.detail_title = ""
        self.detail_rows: list[tuple[str, str]] = []
        self._where = ""
        self._in_body = False
        self._cell: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "g" and "segment" in classes:
            self.segments += 1
            if "sel" in classes:
                self.selected.append(str(int(a.get("data-i") or "0") + 1))
        if tag == "g" and classes == ["state"]:
            self.states.append((a.get("data-host") or "", a.get("data-state") or ""))
        if a.get("id") in ("summary", "detail-title"):
            self._where = a.get("id") or ""
        if a.get("id") == "detail-body":
            self._in_body = True
        if self._in_body and tag in ("th", "td"):
            self._where = tag
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        if self._in_body and tag == "td":
            self.detail_rows[-1] = (self.detail_rows[-1][0], "".join(self._cell))
        if self._in_body and tag == "th":
            self.detail_rows.append(("".join(self._cell), ""))
        self._where = ""

    def handle_data(self, data: str) -> None:
        if self._where == "summary":
            self.summary += data
        elif self._where == "detail-title":
            self.detail_title += data
        elif self._where in ("th", "td"):
            self._cell.append(data)


def test_the_page_runs_in_headless_chromium(trace: Trace, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ladder.html"
    path.write_text(page_of(trace, relative=True), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", path.as_uri() + "#seg-6").stdout
    counter = DomCounter()
    counter.feed(dom)
    n = len(list(trace.segments()))
    assert counter.segments == n
    client = [s for h, s in counter.states if h == "client"]
    server = [s for h, s in counter.states if h == "server"]
    assert client == ["SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED"]
    assert server == ["LISTEN", "SYN-RECEIVED", "ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"]
    # The summary was written by the page's own script, from the SVG, in the browser.
    lines = counter.summary.strip().splitlines()
    assert lines[0] == f"segments={n} lost=1 in-flight=0 states=12 rows={n}"
    assert lines[1] == "states[client]=" + ",".join(client)
    assert lines[2] == "states[server]=" + ",".join(server)
    # "#seg-6" asked the script to show the 6th segment (the lost one) in the detail panel.
    assert counter.detail_title == "#6 of 12: client → server  PSH,ACK seq=6 ack=1 len=6"
    assert ("lost", "at 0.080 s: scripted") in counter.detail_rows
    assert ("payload", '"world!"') in counter.detail_rows
    assert counter.selected == ["6"]


def png_size(path: pathlib.Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def screenshot(page: str, out: pathlib.Path, tmp: pathlib.Path) -> None:
    html_path = tmp / "demo.html"
    html_path.write_text(page, encoding="utf-8")
    chromium(tmp, "--run-all-compositor-stages-before-draw", "--hide-scrollbars", f"--screenshot={out}",
             "--window-size=1200,1400", html_path.as_uri() + "#seg-6")


def demo_page() -> str:
    return render_html(lossy_lifecycle(), "client", "server", title=TITLE, explanation=EXPLANATION,
                       relative=True)


def test_screenshot(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "demo.png"
    screenshot(demo_page(), out, tmp_path)
    assert png_size(out) == (1200, 1400)
    assert out.stat().st_size > 20_000  # a picture, not a blank page


if __name__ == "__main__":  # regenerate the README's picture: python tests/test_htmlview.py docs/demo.png
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        screenshot(demo_page(), pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(d))


def test_relative_numbers_match_the_text_diagram_for_an_old_duplicate_syn() -> None:
    """Both views read numbers the same way: the old duplicate SYN sits 10 below A's ISN (-10),
    B acknowledges it (-9), A's RST carries that number, and B's second ISN starts again at 0."""
    import re

    from synack.render import sequence_diagram
    from synack.scenarios import run_scenario

    res = run_scenario("old-duplicate-syn")
    page = render_html(res.trace, res.left, res.right, title="t", relative=True)
    labels = re.findall(r"(SYN seq=-?\d+|SYN,ACK seq=-?\d+ ack=-?\d+|RST seq=-?\d+)", page)
    assert labels[:5] == ["SYN seq=0", "SYN seq=-10", "SYN,ACK seq=0 ack=-9", "RST seq=-9",
                          "SYN,ACK seq=0 ack=1"]
    text = sequence_diagram(res.trace, res.left, res.right, relative=True)
    assert "<SEQ=-10><CTL=SYN>" in text and "<SEQ=-9><CTL=RST>" in text
