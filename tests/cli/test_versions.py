"""What `unlearn-ops show` prints of a version's tags."""

from __future__ import annotations

from unlearn_ops.cli.versions import TAG_SHOWN, shorten_tag


def test_short_tags_are_shown_whole_and_long_ones_say_how_to_see_them() -> None:
    assert shorten_tag("[0,2,4,5]") == "[0,2,4,5]"
    assert shorten_tag("x" * TAG_SHOWN) == "x" * TAG_SHOWN
    long = '{"data":' + "y" * 4_000 + "}"
    shown = shorten_tag(long)
    assert shown.startswith(long[:TAG_SHOWN])
    assert len(shown) < 250
    assert "4,009 characters; --json shows it whole" in shown
