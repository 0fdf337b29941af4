"""The public report as HTML: one page per month with its charts as inline SVG (readable
without JavaScript, each with a title and a table of the same numbers), served read-only at
`/report` by `labbot serve` and exported as a static site by `labbot report --out DIR`; and one
donor's pages, the thank-you report, exported by `labbot report --donor NAME --out DIR`.

Everything shown comes from `commands.report`, which already keeps private things out; every
value is HTML-escaped here, so a project's words cannot become markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from html import escape
from pathlib import Path
from typing import Any

from commands.billing import format_cents
from commands.capacity import Calendar
from commands.donors import FIRST_DONOR, Donor
from commands.lab import Lab
from commands.process import format_share
from commands.report import (
    DonorMonth,
    DonorSpend,
    PublicMonth,
    ReportLease,
    donor_month,
    is_month,
    public_month,
    report_months,
)

PATH = "/report"
BURN_COLOUR = "#c0392b"
GRANT_COLOUR = "#2c3e50"
KEPT_COLOUR = "#27ae60"
BAR_COLOUR = "#2980b9"
_W, _H, _PAD = 640, 260, 48

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd;
         vertical-align: top; }
td.money, th.money { text-align: right; white-space: nowrap; }
nav a { margin-right: .8rem; }
figure { margin: 1.5rem 0; }
svg text { font-size: 12px; fill: #333; }
"""


def render_month(report: PublicMonth, months: list[str], link: Callable[[str], str]) -> str:
    share = format_share(report.reserved_share)
    r = report.reserve
    summary = [
        ("Granted", report.granted),
        ("Spent", report.spent),
        ("Committed to running leases", report.committed),
        ("Available", report.available),
        (f"Kept for other open-source projects ({share})", r.kept),
        ("… of it used", r.used),
        ("… of it left", r.left),
    ]
    several = len(report.by_donor) > 1
    return _page(
        f"The lab in {report.month}",
        [
            _nav(months, link),
            f"<h1>The lab in {escape(report.month)}</h1>",
            "<p>What the lab's monthly credit was spent on, by whom and why. Foundation "
            "projects and member organizations are reviewed first; "
            f"{escape(share)} of each month is kept for other open-source projects.</p>",
            _given_by(report.by_donor),
            _money_table("The month's credit", summary),
            _burn_chart(report.month, report.granted, report.spent, report.burn, r.kept),
            _bar_chart("Spend by project", report.by_project, "by-project"),
            _money_table("Spend by class", report.by_class),
            _donors(report.by_donor) if several else "",
            *(_calendar_chart(calendar) for calendar in report.calendars),
            _leases(report.leases, donor_column=several),
        ],
    )


def render_donor_month(report: DonorMonth, months: list[str], link: Callable[[str], str]) -> str:
    """One donor's month: what its gift paid for, for the lab to send it."""
    name, month = escape(report.donor), escape(report.month)
    facts = [
        ("Given", format_cents(report.granted)),
        ("Used (spent, and committed to leases still running)", format_cents(report.cents)),
        ("Servers that ran on it", f"{report.servers:,}"),
        ("Server hours", f"{report.server_hours:,}"),
        ("Projects", f"{len(report.by_project):,}"),
        ("Write-ups", f"{report.writeups:,} of {len(report.leases):,} leases"),
    ]
    body = "".join(
        f"<tr><td>{escape(what)}</td><td class='money'>{escape(value)}</td></tr>"
        for what, value in facts
    )
    return _page(
        f"What {report.donor} gave the lab in {report.month}",
        [
            _nav(months, link),
            f"<h1>What {name} gave the lab in {month}</h1>",
            f"<p>Thank you. In {month} {name}'s credit paid for the servers below: which "
            "open-source projects ran them, why, for how long, and what they wrote about it.</p>",
            f"<h2>The gift</h2><table id='gift'>{body}</table>",
            _burn_chart(report.month, report.granted, report.spent, report.burn, None),
            _bar_chart("Spend by project", report.by_project, "by-project"),
            _leases(report.leases, donor_column=False),
        ],
    )


def render_empty() -> str:
    return _page("The lab", ["<h1>The lab</h1>", "<p>No month has been opened yet.</p>"])


def export(
    lab: Lab, out: Path, now: datetime, month: str | None = None, donor: Donor | None = None
) -> list[Path]:
    """The static site: one page per month and index.html (the newest month, or `month`). For
    a `donor`, its pages alone: the months it gave in or paid for leases in."""
    months = report_months(lab)
    chosen = [month] if month else months
    pages: dict[str, Callable[[list[str], Callable[[str], str]], str]]
    if donor is None:
        pages = {key: partial(render_month, public_month(lab, key, now)) for key in chosen}
    else:
        gifts = [donor_month(lab, donor, key, now) for key in chosen]
        pages = {
            gift.month: partial(render_donor_month, gift)
            for gift in gifts
            if gift.granted or gift.leases or month
        }
        months = list(pages)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, render in pages.items():
        path = out / f"{key}.html"
        path.write_text(render(months, lambda m: f"{m}.html"), encoding="utf-8")
        written.append(path)
    index = out / "index.html"
    first = written[0].read_text(encoding="utf-8") if written else render_empty()
    index.write_text(first, encoding="utf-8")
    return [index, *written]


def report_app(lab: Lab, clock: Callable[[], datetime]) -> Callable[..., Iterable[bytes]]:
    """WSGI for `/report` (the newest month) and `/report/YYYY-MM.html`: GET only."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", "The report is read-only.")
        months = report_months(lab)
        wanted = environ.get("PATH_INFO", "").removeprefix(PATH).strip("/").removesuffix(".html")
        if not wanted and not months:
            return _answer(start_response, "200 OK", render_empty())
        key = wanted or months[0]
        if not is_month(key) or key not in months:
            return _answer(
                start_response,
                "404 Not Found",
                _page("Not found", [f"<p>No report for that month; see <a href='{PATH}'>the "
                                    "latest</a>.</p>"]),
            )  # fmt: skip
        page = render_month(public_month(lab, key, clock()), months, lambda m: f"{PATH}/{m}.html")
        return _answer(start_response, "200 OK", page)

    return application


def _answer(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    payload = body.encode("utf-8")
    kind = "text/html" if body.lstrip().startswith("<!") else "text/plain"
    start_response(
        status,
        [("Content-Type", f"{kind}; charset=utf-8"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


def _page(title: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _nav(months: list[str], link: Callable[[str], str]) -> str:
    links = " ".join(f"<a href='{escape(link(m))}'>{escape(m)}</a>" for m in months)
    return f"<nav aria-label='months'>{links}</nav>"


def _money_table(title: str, rows: list[tuple[str, int]]) -> str:
    body = "".join(
        f"<tr><td>{escape(name)}</td><td class='money'>{format_cents(cents)}</td></tr>"
        for name, cents in rows
    )
    return f"<h2>{escape(title)}</h2><table>{body or '<tr><td>none</td></tr>'}</table>"


def _given_by(donors: list[DonorSpend]) -> str:
    """Who gives the credit; nothing for a lab configured without donors, whose one donor has
    no name of its own (FIRST_DONOR)."""
    names = [escape(donor.name) for donor in donors]
    if names == [FIRST_DONOR]:
        return ""
    if len(names) == 1:
        return f"<p>The lab's credit is given by {names[0]}.</p>"
    return f"<p>The lab's credit is given by {', '.join(names[:-1])} and {names[-1]}.</p>"


def _donors(donors: list[DonorSpend]) -> str:
    """Spend by donor as a chart, and what each donor's money paid for, project by project."""
    head = "<tr><th>Donor</th><th>Project</th><th class='money'>Dollars</th></tr>"
    rows = "".join(
        f"<tr><th>{escape(donor.name)}</th><td>all projects ("
        f"{format_cents(donor.granted)} given)</td>"
        f"<td class='money'>{format_cents(donor.cents)}</td></tr>"
        + "".join(
            f"<tr><td></td><td>{escape(project)}</td><td class='money'>{format_cents(cents)}</td>"
            "</tr>"
            for project, cents in donor.by_project
        )
        for donor in donors
    )
    chart = _bar_chart(
        "Spend by donor", [(donor.name, donor.cents) for donor in donors], "by-donor", table=False
    )
    return f"{chart}<h2>Each donor's spend by project</h2><table id='donors'>{head}{rows}</table>"


def _leases(leases: list[ReportLease], donor_column: bool) -> str:
    paid_by = "<th>Paid by</th>" if donor_column else ""
    head = (
        "<tr><th>Project</th><th>Who</th><th>Repository</th><th>Purpose</th><th>Servers</th>"
        f"<th class='money'>Dollars</th>{paid_by}<th>Write-up</th></tr>"
    )
    rows = "".join(
        "<tr>"
        f"<td>{escape(row.project)}</td><td>{escape(row.applicant)}</td>"
        f"<td><a href='{escape(row.repository)}'>{escape(row.repository)}</a></td>"
        f"<td>{escape(row.purpose)}</td><td>{escape(row.shape)}</td>"
        f"<td class='money'>{format_cents(row.cents)}</td>"
        + (f"<td>{escape(row.donor)}</td>" if donor_column else "")
        + f"<td>{_writeup(row.writeup)}</td>"
        "</tr>"
        for row in leases
    )
    return f"<h2>Leases</h2><table id='leases'>{head}{rows}</table>"


def _writeup(url: str | None) -> str:
    return f"<a href='{escape(url)}'>write-up</a>" if url else "pending"


def _burn_chart(
    month: str, granted: int, spent: int, burn: list[tuple[int, int]], kept: int | None
) -> str:
    """Spend by the end of each day against the grant, and (for the lab's month, where `kept`
    is its reserve) the line favoured requests stop at: the grant less the reserve."""
    top = max([granted, *(cents for _, cents in burn), 1])
    days = 31
    x = lambda day: _PAD + (_W - 2 * _PAD) * day / days  # noqa: E731
    y = lambda cents: _H - _PAD - (_H - 2 * _PAD) * cents / top  # noqa: E731
    points = " ".join(f"{x(day):.1f},{y(cents):.1f}" for day, cents in [(0, 0), *burn])
    grant_y = y(granted)
    title = f"{month}: {format_cents(spent)} spent of {format_cents(granted)} granted"
    kept_line = ""
    if kept is not None:
        kept_y = y(granted - kept)
        kept_line = (
            f"<line x1='{_PAD}' y1='{kept_y:.1f}' x2='{_W - _PAD}' y2='{kept_y:.1f}' "
            f"stroke='{KEPT_COLOUR}' stroke-dasharray='2 3'/>"
            f"<text x='{_PAD + 4}' y='{kept_y + 14:.1f}'>foundation and members stop here</text>"
        )
    return (
        f"<figure><h2>The month's burn against its grant</h2>"
        f"<svg id='burn' role='img' aria-labelledby='burn-title' viewBox='0 0 {_W} {_H}' "
        f"width='{_W}' height='{_H}' xmlns='http://www.w3.org/2000/svg'>"
        f"<title id='burn-title'>{escape(title)}</title>"
        f"<line x1='{_PAD}' y1='{_H - _PAD}' x2='{_W - _PAD}' y2='{_H - _PAD}' stroke='#999'/>"
        f"<line x1='{_PAD}' y1='{grant_y:.1f}' x2='{_W - _PAD}' y2='{grant_y:.1f}' "
        f"stroke='{GRANT_COLOUR}' stroke-dasharray='6 4'/>"
        f"<text x='{_W - _PAD}' y='{grant_y - 4:.1f}' text-anchor='end'>granted "
        f"{format_cents(granted)}</text>"
        f"{kept_line}"
        f"<polyline id='burn-line' points='{points}' fill='none' stroke='{BURN_COLOUR}' "
        "stroke-width='4'/>"
        f"<text x='{_PAD}' y='{_H - _PAD + 16}'>day 1</text>"
        f"<text x='{_W - _PAD}' y='{_H - _PAD + 16}' text-anchor='end'>day {days}</text>"
        "</svg><figcaption>"
        f"{escape(title)}.</figcaption></figure>"
    )


def _bar_chart(title: str, rows: list[tuple[str, int]], chart_id: str, table: bool = True) -> str:
    """Horizontal bars, one a row, and (unless the caller shows the numbers itself) a table of
    the same numbers."""
    if not rows:
        return f"<h2>{escape(title)}</h2><p>Nothing was spent.</p>"
    top = max(cents for _, cents in rows) or 1
    height = 28 * len(rows) + 10
    bars = "".join(
        f"<g><title>{escape(name)}: {format_cents(cents)}</title>"
        f"<text x='0' y='{28 * i + 19}'>{escape(name)}</text>"
        f"<rect class='bar' x='160' y='{28 * i + 5}' height='20' "
        f"width='{max(1, round(380 * cents / top))}' fill='{BAR_COLOUR}'/>"
        f"<text x='{170 + round(380 * cents / top)}' y='{28 * i + 19}'>{format_cents(cents)}</text>"
        "</g>"
        for i, (name, cents) in enumerate(rows)
    )
    return (
        f"<figure><h2>{escape(title)}</h2>"
        f"<svg id='{chart_id}' role='img' aria-label='{escape(title)}' viewBox='0 0 {_W} "
        f"{height}' width='{_W}' height='{height}' xmlns='http://www.w3.org/2000/svg'>{bars}"
        f"</svg></figure>{_money_table(title + ' (table)', rows) if table else ''}"
    )


def _calendar_chart(calendar: Calendar) -> str:
    """A plan's coming two weeks in a metro: a column a day, as high as the most servers held
    or booked at any moment of it, under a line at the limit."""
    days = calendar.days
    limit = days[0].limit if days else None
    top = max([limit or 0, *(d.held for d in days), 1])
    step = (_W - 2 * _PAD) / max(1, len(days))
    scale = (_H - 2 * _PAD) / top
    chart_id = f"calendar-{calendar.plan}-{calendar.metro}".replace(".", "-")
    columns = "".join(
        f"<g><title>{d.day:%a %b %d}: {d.held}"
        f"{'' if limit is None else f' of {limit}'} held</title>"
        f"<rect class='held' x='{_PAD + i * step + 2:.1f}' y='{_H - _PAD - d.held * scale:.1f}' "
        f"width='{step - 4:.1f}' height='{d.held * scale:.1f}' fill='{BAR_COLOUR}'/>"
        f"<text x='{_PAD + (i + 0.5) * step:.1f}' y='{_H - _PAD + 16}' text-anchor='middle'>"
        f"{d.day.day}</text></g>"
        for i, d in enumerate(days)
    )
    line = (
        ""
        if limit is None
        else f"<line id='{chart_id}-limit' x1='{_PAD}' x2='{_W - _PAD}' "
        f"y1='{_H - _PAD - limit * scale:.1f}' y2='{_H - _PAD - limit * scale:.1f}' "
        f"stroke='{BURN_COLOUR}' stroke-width='2' stroke-dasharray='6 4'/>"
    )
    title = f"{calendar.plan} in {calendar.metro}, the coming {len(days)} days"
    against = "no limit set" if limit is None else f"the dashed line is the limit, {limit}"
    return (
        f"<figure><h2>{escape(title)}</h2>"
        f"<svg id='{escape(chart_id)}' role='img' aria-label='{escape(title)}' "
        f"viewBox='0 0 {_W} {_H}' width='{_W}' height='{_H}' "
        f"xmlns='http://www.w3.org/2000/svg'>{columns}{line}</svg><figcaption>"
        f"Servers held or booked at most at any moment of each day (UTC); {against}."
        "</figcaption></figure>"
    )
