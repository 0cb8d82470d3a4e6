"""Every example of docs/testing-your-code.md, run as the file it shows (with pytest's own
``pytester``: a fresh pytest run per example, the synack plugin loaded from its entry point)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "testing-your-code.md"
_BLOCK = re.compile(r"```python\n# (test_guide_\w+\.py)\n(.*?)```", re.S)


def _examples() -> dict[str, str]:
    return {name: body for name, body in _BLOCK.findall(GUIDE.read_text())}


def test_the_guide_has_its_four_examples() -> None:
    assert sorted(_examples()) == ["test_guide_aiohttp.py", "test_guide_socketserver.py",
                                   "test_guide_tun.py", "test_guide_websockets.py"]


@pytest.mark.parametrize("name", sorted(_examples()))
def test_guide_example(name: str, pytester: pytest.Pytester) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("websockets")
    pytester.makepyfile(**{name[:-3]: _examples()[name]})
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) >= 1
