"""The one boolean parser (context.Settings and the other processes' command lines)."""

from __future__ import annotations

import pytest

from common.flags import env_flag


@pytest.mark.parametrize(
    "raw,want",
    [
        ("1", True),
        ("true", True),
        ("yes", True),
        ("YES", True),
        ("on", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("", False),
        (None, False),
    ],
)
def test_one_boolean_parser(raw, want):
    assert env_flag(raw) is want


def test_unset_or_blank_is_the_default():
    assert env_flag(None, default=True) is True and env_flag("  ", default=True) is True
    assert env_flag("off", default=True) is False
