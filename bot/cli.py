"""The `labbot` command line: the demo, the server, and the operator's tools."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bot.settings import SettingsError, from_env
from commands.facts import utc_text
from commands.report import is_month
from metal.provider import utcnow


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except SettingsError as error:
        print(f"labbot: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labbot", description="Run a donated bare-metal lab from Slack."
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    demo = sub.add_parser("demo", help="tell a whole lease story on a throwaway database")
    demo.add_argument(
        "--provider",
        choices=["simulated", "packet", "ec2"],
        default="simulated",
        help="which backend the story provisions through (packet: a local fake Packet API; "
        "ec2: boto3 against a local moto server)",
    )
    demo.set_defaults(run=_demo)

    serve = sub.add_parser("serve", help="serve the Slack app, its workers and the sweep")
    serve.set_defaults(run=_serve)

    work = sub.add_parser("work", help="do what the web processes kept (the Procfile's worker)")
    work.set_defaults(run=_work)

    leases = sub.add_parser("leases", help="list leases")
    leases.add_argument("--state", action="append", help="only leases in this state (repeatable)")
    leases.add_argument("--owner", help="only this Slack user's leases")
    leases.add_argument("--limit", type=int, default=50)
    leases.set_defaults(run=_leases)

    show = sub.add_parser("show", help="one lease in full")
    show.add_argument("lease_id", type=int)
    show.set_defaults(run=_show)

    credit = sub.add_parser("credit", help="the month's books")
    credit.add_argument("--month", help="YYYY-MM (default: this month)")
    credit.add_argument("--json", action="store_true", help="machine-readable output")
    credit.set_defaults(run=_credit)

    sweep = sub.add_parser("sweep", help="run the reconcile loop")
    sweep.add_argument(
        "--once",
        action="store_true",
        help="one pass, then exit (the only mode here; `serve` runs it on a schedule)",
    )
    sweep.add_argument("--dry-run", action="store_true", help="say what is due without doing it")
    sweep.set_defaults(run=_sweep)

    audit = sub.add_parser("audit", help="the audit log")
    audit.add_argument("--lease", type=int, help="only events of this lease")
    audit.add_argument("--format", choices=["csv", "json"], default="csv")
    audit.set_defaults(run=_audit)

    resolve = sub.add_parser("resolve", help="close a quarantined lease after cleaning up by hand")
    resolve.add_argument("lease_id", type=int)
    resolve.add_argument(
        "--as", dest="actor", default="system", help="the admin's Slack id, for the audit log"
    )
    resolve.set_defaults(run=_resolve)

    report = sub.add_parser(
        "report", help="export the public report as a static site (HTML with SVG charts)"
    )
    report.add_argument("--month", help="YYYY-MM (default: every month the books have opened)")
    report.add_argument(
        "--donor",
        help="only this donor's pages: what its credit paid for (the report to thank it with)",
    )
    report.add_argument("--out", required=True, help="the directory to write the pages into")
    report.set_defaults(run=_report)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="apply schema migrations")
    upgrade.set_defaults(run=_db_upgrade)
    backup = db_sub.add_parser(
        "backup", help="copy the SQLite database to PATH while labbot keeps serving"
    )
    backup.add_argument("path", help="the new file to write (never overwritten)")
    backup.set_defaults(run=_db_backup)
    return parser


def _operator_lab():
    """A Lab for the operator's commands: real settings, and no notifier, so the notices they
    cause wait in the outbox for the running bot to send."""
    from bot.runtime import build_lab

    return build_lab(from_env(), None)


def _now() -> datetime:
    return utcnow()


def _say(text: str, ok: bool = True) -> None:
    """What labbot wrote for people, for a terminal: times in UTC (Slack's date tokens are
    Slack's to render), an answer that refuses on stderr."""
    print(utc_text(text), file=sys.stdout if ok else sys.stderr)


def _demo(args: argparse.Namespace) -> int:
    from bot.demo import main as demo_main

    return demo_main(provider=args.provider)


def _serve(args: argparse.Namespace) -> int:
    from bot.multiproc import metrics_dir

    with metrics_dir():  # before prometheus_client is imported: it reads the setting once
        from bot.serve import main as serve_main

        return serve_main()


def _work(args: argparse.Namespace) -> int:
    from bot.worker import main as work_main

    return work_main(child=False)


def _leases(args: argparse.Namespace) -> int:
    from commands.facts import one_line
    from commands.views import leases

    lab = _operator_lab()
    found = leases(lab, owner=args.owner, states=args.state, limit=args.limit)
    for lease in found:
        _say(one_line(lease, _now()))
    if not found:
        print("no leases match", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    from commands.views import show

    outcome = show(_operator_lab(), "system", args.lease_id, _now())
    _say(outcome.message, outcome.ok)
    return 0 if outcome.ok else 1


def _credit(args: argparse.Namespace) -> int:
    from commands.credit_report import credit_report

    month = args.month
    if month and not is_month(month):
        print(f"labbot: --month takes YYYY-MM, like 2026-11, not '{month}'", file=sys.stderr)
        return 2
    report = credit_report(_operator_lab(), _now(), month)
    _say(json.dumps(report.as_dict(), default=str, indent=2) if args.json else report.text())
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bot.report_html import export
    from commands.report import report_months

    lab = _operator_lab()
    if args.month and (not is_month(args.month) or args.month not in report_months(lab)):
        print(
            f"labbot: --month takes YYYY-MM of a month the books have opened "
            f"({', '.join(report_months(lab)) or 'none yet'}), not '{args.month}'",
            file=sys.stderr,
        )
        return 2
    donor = lab.policy.donor(args.donor) if args.donor is not None else None
    if args.donor is not None and donor is None:
        known = ", ".join(each.name for each in lab.policy.donors())
        print(f"labbot: --donor takes one of the lab's donors ({known}), not '{args.donor}'",
              file=sys.stderr)  # fmt: skip
        return 2
    written = export(lab, Path(args.out), _now(), args.month, donor)
    whose = f"{donor.name}'s report" if donor else "The report"
    print(f"{whose} is in {written[0]} ({len(written) - 1} month pages).")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from commands.sweep import sweep

    report = sweep(_operator_lab(), _now(), dry_run=args.dry_run)
    _say("\n".join(report.lines()))
    return 1 if report.errors else 0


def _audit(args: argparse.Namespace) -> int:
    from commands.views import audit_events, audit_export

    print(utc_text(audit_export(audit_events(_operator_lab(), args.lease), args.format)), end="")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    from commands.reclaim import resolve

    outcome = resolve(_operator_lab(), args.actor, args.lease_id, _now())
    _say(outcome.message, outcome.ok)
    return 0 if outcome.ok else 1


def _db_upgrade(args: argparse.Namespace) -> int:
    from bot.runtime import open_database

    db = open_database(from_env())
    print(f"database at {db.url} is up to date")
    return 0


def _db_backup(args: argparse.Namespace) -> int:
    from storage.backup import BackupError, backup
    from storage.db import Database

    db = Database(from_env().database_url)
    try:
        copy = backup(db, Path(args.path))
    except BackupError as error:
        print(f"labbot: {error}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"backed up {db.path} to {copy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
