"""The state diagram is generated from the transition table the core enforces."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from synack.cli import main
from synack.core.connection import Connection
from synack.core.records import TRANSITIONS, Cause, State, Transition, diagram_arrows
from synack.statediagram import to_dot, to_svg, to_text

SVG = "{http://www.w3.org/2000/svg}"
ARROWS = diagram_arrows()


def test_arrows_merge_the_transitions_of_one_pair_of_states() -> None:
    assert {(a.src, a.dst, a.main) for a in ARROWS} == {(t.src, t.dst, t.main) for t in TRANSITIONS}
    assert len(ARROWS) == len({(a.src, a.dst, a.main) for a in ARROWS})
    est = next(a for a in ARROWS if (a.src, a.dst) == (State.ESTABLISHED, State.CLOSED))
    assert est.label == "rcv RST / ABORT / timeout" and not est.main
    syn = next(a for a in ARROWS if (a.src, a.dst) == (State.LISTEN, State.SYN_RECEIVED))
    assert (syn.label, syn.action, syn.main) == ("rcv SYN", "snd SYN,ACK", True)


def test_text_lists_every_state_and_every_main_transition() -> None:
    text = to_text()
    for st in State:
        assert f"\n{st.value}\n" in f"\n{text}"
    for t in TRANSITIONS:
        if t.main:
            assert t.event.value in text and t.dst.value in text


def test_text_all_includes_the_abort_arrows() -> None:
    assert "(abort/reset)" not in to_text()
    assert to_text(include_aborts=True).count("(abort/reset)") == sum(not a.main for a in ARROWS)


def test_dot_has_one_edge_per_arrow() -> None:
    dot = to_dot(include_aborts=True)
    assert dot.count(" -> ") == len(ARROWS)
    assert 'digraph tcp {' in dot and dot.rstrip().endswith("}")


def test_svg_has_one_arrow_per_transition_and_a_box_per_state() -> None:
    root = ET.fromstring(to_svg())
    paths = [p for p in root.iter(f"{SVG}path") if p.get("class") == "transition"]
    assert len(paths) == sum(a.main for a in ARROWS)
    states = {g.get("data-state") for g in root.iter(f"{SVG}g") if g.get("class") == "state"}
    assert states == {s.value for s in State}
    pairs = {(p.get("data-src"), p.get("data-dst")) for p in paths}
    assert ("SYN-SENT", "ESTABLISHED") in pairs and ("TIME-WAIT", "CLOSED") in pairs


def test_cli_states_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["states"]) == 0
    assert "TIME-WAIT" in capsys.readouterr().out
    assert main(["states", "--format", "dot", "--all"]) == 0
    assert capsys.readouterr().out.count(" -> ") == len(ARROWS)


def test_illegal_transition_is_refused_by_the_table() -> None:
    conn = Connection(("10.0.0.1", 1000), ("10.0.0.2", 80), iss=1)
    with pytest.raises(AssertionError, match="illegal transition CLOSED=>ESTABLISHED"):
        conn._set_state(Transition(State.CLOSED, State.ESTABLISHED, Cause.RCV_SYN_ACK))
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("wrong", [
    Transition(State.LISTEN, State.SYN_RECEIVED, Cause.RCV_SYN, "snd SYN,ACK"),  # the source is not ours
    Transition(State.CLOSED, State.SYN_SENT, Cause.PASSIVE_OPEN, "snd SYN"),  # the wrong event
    Transition(State.CLOSED, State.SYN_SENT, Cause.ACTIVE_OPEN),  # equal fields but another action
])
def test_set_state_checks_source_destination_and_event(wrong: Transition) -> None:
    conn = Connection(("10.0.0.1", 1000), ("10.0.0.2", 80), iss=1)
    with pytest.raises(AssertionError, match="illegal transition"):
        conn._set_state(wrong)
    assert conn.state is State.CLOSED
    ok = next(t for t in TRANSITIONS if t.src is State.CLOSED and t.event is Cause.ACTIVE_OPEN)
    conn._set_state(ok)
    assert conn.state is State.SYN_SENT
