"""Tables: the identifying columns survive narrow terminals; pipes get plain rows."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopost.tables import EXTRA, FLEX, KEY, Cell, Column, cut, emit, render_table, width_of

COLUMNS = [Column("ID", KEY), Column("STATUS", KEY), Column("ACCOUNT", KEY),
           Column("WHEN"), Column("TRIES", EXTRA, right=True), Column("TEXT", FLEX)]


def row(i: int, text: str = "a fairly long post text that will not fit anywhere narrow"):
    return [f"job{i:05d}", "cancelled", "mastodon-main",
            Cell("2026-12-01 09:00 CET", short="12-01 09:00"), "0/5", text]


@pytest.mark.parametrize("width", [60, 80, 200])
def test_identifying_columns_stay_whole(width):
    out = render_table(COLUMNS, [row(1), row(2)], width)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "ACCOUNT"]
    for i, line in ((1, lines[1]), (2, lines[2])):
        assert line.split()[:3] == [f"job{i:05d}", "cancelled", "mastodon-main"]
        assert width_of(line) <= width
    if width == 200:
        assert "a fairly long post text that will not fit anywhere narrow" in out
        assert "left out" not in out


def test_a_column_left_out_is_named():
    out = render_table(COLUMNS, [row(1)], 60)
    assert "TRIES" not in out.splitlines()[0] and "WHEN" in out.splitlines()[0]
    assert "(left out at 60 columns: TRIES;" in out
    assert "(left out at 50 columns: WHEN, TRIES;" in render_table(COLUMNS, [row(1)], 50)


def test_short_form_before_leaving_out():
    out = render_table(COLUMNS, [row(1)], 60)
    assert "12-01 09:00" in out and "CET" not in out


def test_text_column_absorbs_the_squeeze():
    wide = render_table(COLUMNS, [row(1)], 200).splitlines()[1]
    narrow = render_table(COLUMNS, [row(1)], 80).splitlines()[1]
    assert wide.endswith("narrow") and narrow.endswith("…")
    assert width_of(narrow) == 80


def test_wide_characters_are_counted_as_two_cells():
    assert width_of("日本") == 4 and width_of("e\u0301") == 1
    assert width_of(cut("日本語のテキスト", 7)) <= 7
    out = render_table(COLUMNS, [row(1, "日本語のテキスト" * 10)], 80)
    assert all(width_of(line) <= 80 for line in out.splitlines())


@given(st.text(min_size=0, max_size=80), st.integers(min_value=0, max_value=40))
def test_cut_never_exceeds_the_width(text, width):
    assert width_of(cut(text, width)) <= max(width, 0)


def test_piped_rows_are_tab_separated_and_whole():
    stream = io.StringIO()
    emit(COLUMNS, [row(1, "line one\nline\ttwo")], stream)
    assert stream.getvalue() == ("job00001\tcancelled\tmastodon-main\t2026-12-01 09:00 CET"
                                 "\t0/5\tline one line two\n")
