"""Lists in pages: every line on exactly one page, each page within one Slack answer; and the
books' list of projects, cut to an answer with the count of the rest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from commands.credit_report import CreditLine, CreditReport
from commands.pages import ANSWER_BUDGET, PER_PAGE, cut, footer, no_such_page, page
from commands.process import Reserve


@given(st.lists(st.text(max_size=900), max_size=120))
def test_every_line_is_on_exactly_one_page_and_each_page_fits(lines: list[str]) -> None:
    pages = cut(lines)
    assert [i for p in pages for i in p] == list(range(len(lines)))
    for p in pages:
        assert len(p) <= PER_PAGE
        assert len(p) == 1 or sum(len(lines[i]) + 1 for i in p) <= ANSWER_BUDGET


def test_a_page_says_where_it_is_and_how_to_see_the_next() -> None:
    lines = [f"#{n} coredns" for n in range(1, 46)]
    second = page(lines, 2)
    assert second is not None and second.lines[0] == "#21 coredns"
    assert footer(second, "/lab list") == (
        "Showing 21 to 40 of 45 (page 2 of 3). `/lab list 3` shows the next page."
    )
    last = page(lines, 3)
    assert footer(last, "/lab list") == (
        "Showing 41 to 45 of 45 (page 3 of 3). That is the last page; `/lab list` shows the first."
    )
    assert footer(page(lines[:3], 1), "/lab list") == ""
    assert page(lines, 4) is None and page(lines, 0) is None
    assert no_such_page(4, 3, "your leases", "/lab list") == (
        "There is no page 4: your leases fit on 3 pages; `/lab list 3` shows the last."
    )


def test_the_books_in_an_answer_count_the_projects_that_do_not_fit() -> None:
    projects = [CreditLine(f"project-{n:03d}", None, 100 * n, 0, None) for n in range(300)]
    lab = CreditLine("lab", 2_500_000, 1_000, 0, 2_499_000)
    report = CreditReport("2026-11", lab, projects, 0, None, Reserve(500_000, 0, 500_000), 2000)
    assert report.text().count("project-") == 300  # the CLI: every one
    answer = report.text(ANSWER_BUDGET)
    shown = answer.count("project-")
    assert len(answer) <= ANSWER_BUDGET + 100 and 0 < shown < 300
    assert answer.endswith(
        f"and {300 - shown} more: the lab's public report lists every project's spend"
    )
