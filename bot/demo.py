"""`labbot demo`: the whole story, told through the real bolt App.

The App is served in-process on 127.0.0.1 with its Web API pointed at FakeSlack; people act by
sending signed requests exactly as Slack would (slash commands, button clicks, form
submissions), and the transcript prints what each person saw: channel cards, DMs, ephemeral
answers, forms, the card updated after the decision. A simulated clock lets a week pass in a
second: the listeners read it from the app context, and the sweep is called with it. As in
`labbot serve`, every request is kept in the inbox before its ack and done from the inbox, once
(bot.inbox); here the one process is both the web process and the worker, so each is done as
soon as it is kept.

Two projects of the foundation and a stranger, five requests: the queue ranked by class, one
denied, one refused because it would over-commit the month, one refused because it would eat
into the share kept for other open-source projects, one approved, provisioned, reminded at 24h
and 1h, extended, expired and reclaimed; then the write-up, the month's books and the public
report written to a directory.

With the simulated provider (`make run`) the lab has two donors: cncf, whose credit pays for
any server, and armco, whose smaller credit pays only for Arm servers and whose account asks
less for them. The story adds a request routed to each, armco's month filled so that the next
Arm request goes to cncf, and armco's own report: what its gift paid for. It also tells two
leases nobody uses: their owners asked, one still in use, the other told to the reviewers and
released early, with what its hold gave back (docs/idle.md).

One test across three metros: a request for two servers in each of three metros, filed, approved,
provisioned and listed by metro as one lease, then released and reclaimed in every metro.

The lab also has a capacity calendar for one plan in one metro (`[capacity]`): a request that
would pass it is refused with the next window that fits, and the calendar is read with
`/lab calendar`.

Last, a booking for tomorrow across three metros: alice, in Amsterdam, books 09:00 her time;
it is approved ahead and its servers are prepared the lead time before the start.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.app import AppContext, build_context, create_app
from bot.blocks import cards, dms, home, modals
from bot.report_html import export
from bot.scheduler import COURIER_EVERY
from bot.serve import local_server
from bot.settings import Account, Settings
from commands.activity import ActivityReport, Reporter, record, sample
from commands.billing import format_cents
from commands.credit_report import credit_report
from commands.donors import Donor
from commands.facts import utc_text
from commands.notices import deliver, undelivered
from commands.policy import Policy, Roles
from commands.report import donor_month
from commands.states import ServerState
from commands.sweep import sweep
from fakes.forge import FakeForge
from fakes.keys import public_key
from fakes.packet import FakePacket
from fakes.slack import Call, FakeSlack
from fakes.slack_sender import SlackSender, field
from metal.catalog import seed
from metal.ec2_catalog import EXAMPLE
from metal.provider import Catalog
from storage.models import Lease, Server

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ALICE, CAROL, BOB, RITA, ADA = "U0ALICE", "U0CAROL", "U0BOB", "U0RITA", "U0ADA"
NAMES = {
    ALICE: "alice (coredns)",
    CAROL: "carol (coredns)",
    BOB: "bob (envoy)",
    RITA: "rita (reviewer)",
    ADA: "ada (admin)",
}
# A busy morning: maintainers of ten other projects ask for servers, three requests each.
CROWD = {
    f"U0{name.upper()}": (name, project)
    for name, project in (
        ("dana", "kubevirt"),
        ("eli", "falco"),
        ("fay", "linkerd"),
        ("gus", "vitess"),
        ("hal", "thanos"),
        ("ivy", "cortex"),
        ("jon", "keda"),
        ("kim", "dragonfly"),
        ("lee", "harbor"),
        ("max", "rook"),
    )
}
NAMES.update({user: f"{name} ({project})" for user, (name, project) in CROWD.items()})
DANA, ELI, FAY, GUS = "U0DANA", "U0ELI", "U0FAY", "U0GUS"  # of the crowd: two donors' story
HAL, IVY = "U0HAL", "U0IVY"  # of the crowd: the capacity calendar
MEMBERS = {name.split()[0]: user for user, name in NAMES.items()}  # what @ offers: carol -> U0CAROL
CHANNELS = {"C0REVIEW": "#lab-review", "C0ADMIN": "#lab-admin"}
TOKEN = "xoxb-demo"
COURIER_SECONDS = 60  # at most, after a step: Slack's pace for a minute's worth of messages
_MENTION = re.compile(r"<@(\w+)>")
FILE_LINES = 2  # of each file shared, the transcript prints the first few lines
REPORT_EVERY = timedelta(minutes=5)  # how often a server's activity timer reports


@dataclass
class DemoClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


# What alice and bob ask for: (plan, metro) of the small lease and of the large ones.
PACKET_SHAPES = (("c1.small.x86", "ams1"), ("m1.xlarge.x86", "sjc1"))
EC2_SHAPES = (("c7g.metal", "us-east-1"), ("m7g.metal", "us-west-2"))
# A lease too large for one Slack message, told with the simulated provider (`make run`).
MANY = "120 t1.small.x86 ams1 4d"
# The donors of `make run`: cncf pays for any server; armco gives less, for Arm servers only,
# and its account asks 80% of the list price for them.
CNCF = Donor("cncf", monthly_grant_cents=2_500_000)
ARMCO = Donor("armco", monthly_grant_cents=200_000, architectures=frozenset({"aarch64"}))
ARMCO_PRICES = 80  # percent
# `make run`'s capacity calendar: at most this many of the plan in the metro at once.
CAPACITY = ("c1.xlarge.x86", "nrt1", 10)


def main(
    workdir: Path | None = None, provider: str = "simulated", report: Path | None = None
) -> int:
    """`provider="packet"` tells the same story through packet-python against the fake Packet
    API, served over HTTPS on 127.0.0.1 and trusted through REQUESTS_CA_BUNDLE;
    `provider="ec2"` through boto3 against moto's server on 127.0.0.1, where each instance is
    `pending` for four minutes and EventBridge Scheduler holds each instance's backstop. Without
    a `workdir` the database lives in a temporary directory that is removed afterwards; the
    public report the story ends with is kept (in `workdir`, or a directory of its own) for the
    reader to open."""
    if workdir is None:
        report = Path(tempfile.mkdtemp(prefix="labbot-report-"))
        with tempfile.TemporaryDirectory(prefix="labbot-demo-") as throwaway:
            return main(Path(throwaway), provider, report)
    clock = DemoClock()
    secret = secrets.token_hex(16)
    with FakeSlack() as fake, _forge() as forge, contextlib.ExitStack() as stack:
        settings = _settings(workdir, fake, secret, forge)
        if provider == "packet":
            metal = stack.enter_context(FakePacket(clock=clock, provision_seconds=240))
            os.environ["REQUESTS_CA_BUNDLE"] = metal.ca_bundle_path
            settings = on_fake_packet(settings, metal)
            print(
                f"(servers come through packet-python from a fake Packet API at {metal.end_point})"
            )
        shapes, observe = PACKET_SHAPES, None
        many = MANY if provider == "simulated" else None
        if provider == "simulated":
            settings = with_two_donors(settings)
            settings = replace(settings, policy=replace(settings.policy, capacity=(CAPACITY,)))
        if provider == "ec2":
            # moto is a test dependency: imported only for the story that uses it.
            from fakes.ec2 import CREDENTIALS, FaultProxy, MotoServer

            moto = stack.enter_context(MotoServer())
            proxy = stack.enter_context(FaultProxy(moto.url, clock=clock, pending_seconds=240))
            os.environ.update(CREDENTIALS)  # fake keys for the local server, through boto3's chain
            settings = on_moto(settings, proxy.url)
            shapes, observe = EC2_SHAPES, lambda: ec2_view(moto.url)
            print(f"(servers come through boto3 from moto's EC2 at {moto.url}, behind {proxy.url})")
        ctx = build_context(settings, clock=clock)
        with local_server(create_app(ctx), settings.slack_signing_secret) as url:
            sender = SlackSender(url, secret, response_url_base=fake, members=MEMBERS)
            idle = provider == "simulated"
            Story(ctx, fake, sender, clock, shapes, observe, many, idle).run()
        out = report or workdir / "report"
        written = export(ctx.lab, out, clock.now)
        print(
            f"\nThe public report (what /report serves) is in {written[0]}: the month's money, "
            "the reserve, spend by project, class and donor, every lease and its write-up."
        )
        if len(ctx.lab.policy.donors()) > 1:
            thank_armco(ctx, out / "armco", clock.now)
        ctx.shutdown()
        ctx.lab.db.dispose()
    return 0


def with_two_donors(settings: Settings) -> Settings:
    """cncf and armco, each a simulated provider account of its own (armco's catalog at its
    prices), as two [[donor]] tables in LABBOT_CONFIG would configure them."""
    catalog = seed()
    cheaper = {
        slug: replace(plan, hourly_cents=plan.hourly_cents * ARMCO_PRICES // 100)
        for slug, plan in catalog.plans.items()
    }
    return replace(
        settings,
        policy=replace(settings.policy, donor_list=(CNCF, ARMCO)),
        donor_accounts=(
            Account(donor=CNCF.name, table='LABBOT_CONFIG: [[donor]] "cncf"'),
            Account(
                donor=ARMCO.name,
                table='LABBOT_CONFIG: [[donor]] "armco"',
                catalog=Catalog(cheaper, catalog.metros, catalog.oses, catalog.logins),
            ),
        ),
    )


def thank_armco(ctx: AppContext, out: Path, now: datetime) -> None:
    """armco's own pages (`labbot report --donor armco`), and what they say, in a line."""
    written = export(ctx.lab, out, now, donor=ARMCO)
    gift = donor_month(ctx.lab, ARMCO, now.strftime("%Y-%m"), now)
    projects = ", ".join(project for project, _ in gift.by_project)
    print(
        f"armco's report (labbot report --donor armco) is in {written[0]}: in {gift.month} its "
        f"{format_cents(gift.granted)} paid for {gift.servers} servers, {gift.server_hours:,} "
        f"server hours so far and {format_cents(gift.cents)} with what is committed, for "
        f"{projects}; no other donor's lease is on it."
    )


def on_fake_packet(settings: Settings, metal: FakePacket, **changes: Any) -> Settings:
    """The same settings, with servers from the fake Packet API (the demo and the tests)."""
    return replace(
        settings,
        provider="packet",
        packet_auth_token=metal.token,
        packet_project_id=metal.project_id,
        packet_api_url=metal.end_point,
        **changes,
    )


def on_moto(settings: Settings, endpoint: str, **changes: Any) -> Settings:
    """The same settings, with servers from EC2 at `endpoint` (a local moto server), where the
    backstop role is made as docs/providers.md says."""
    from fakes.ec2 import backstop_role

    return replace(
        settings,
        provider="ec2",
        ec2_catalog=str(EXAMPLE),
        ec2_backstop_role=backstop_role(endpoint),
        ec2_max_attempts=3,
        aws_endpoint_url=endpoint,
        **changes,
    )


def ec2_view(endpoint: str) -> str:
    """What the AWS console would show: instances by state, and when their backstops fire."""
    from fakes.ec2 import instances, schedules

    states = sorted(i["State"]["Name"] for i in instances(endpoint))
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)) or "no instances"
    fire = sorted(f"{n} {s['ScheduleExpression']}" for n, s in schedules(endpoint).items())
    backstop = f"; backstop schedules {', '.join(fire)} UTC" if fire else ""
    return f"[EC2 console] {counts}{backstop}"


def _forge() -> FakeForge:
    """The forges the story's repositories live on, served locally."""
    forge = FakeForge()
    crowd = [f"{project}/{project}" for _, project in CROWD.values()]
    for path in ("coredns/coredns", "envoyproxy/envoy", "left-pad/left-pad", *crowd):
        forge.add_repo("github", path, license="Apache-2.0" if "pad" not in path else "WTFPL")
    return forge


def _settings(workdir: Path, fake: FakeSlack, secret: str, forge: FakeForge) -> Settings:
    return Settings(
        database_url=f"sqlite:///{workdir / 'demo.db'}",
        policy=Policy(
            foundation_projects=(("coredns", "graduated"), ("envoy", "graduated")),
            members=("Packet", "Intel"),
            max_servers=500,
            idle_reclaim=timedelta(hours=24),  # LABBOT_IDLE_RECLAIM=24h
        ),
        github_api_url=forge.github_url,
        gitlab_api_url=forge.gitlab_url,
        roles=Roles(reviewers=frozenset({RITA}), admins=frozenset({ADA})),
        review_channel="C0REVIEW",
        admin_channel="C0ADMIN",
        slack_api_url=fake.base_url,
        slack_bot_token=TOKEN,
        slack_signing_secret=secret,
        simulated_provision=timedelta(seconds=240),
    )


def _names(text: str) -> str:
    """Slack renders mentions as names, times in the reader's zone and entities as characters;
    so does the transcript (its reader's zone being UTC)."""
    shown = _MENTION.sub(lambda m: "@" + NAMES.get(m[1], m[1]).split()[0], utc_text(text))
    return html.unescape(shown)


class Transcript:
    """Prints the Web API calls made since the last step as the people involved saw them."""

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.seen = 0
        self.where = {**CHANNELS, **{fake.dm_channel(u): f"DM to {n}" for u, n in NAMES.items()}}

    def show(self, actor: str | None) -> None:
        calls = self.fake.calls()
        for call in calls[self.seen :]:
            line = self._line(call, actor)
            if line:
                print(f"    {line}")
        self.seen = len(calls)

    def _line(self, call: Call, actor: str | None) -> str | None:
        if not call.ok and call.method != "response_url":
            return f"(Slack refused {call.method}: {call.response.get('error')})"
        text = _names(str(call.params.get("text") or ""))
        who = NAMES.get(actor or "", "")
        if call.method == "chat.postMessage":
            where = self.where.get(call.response["channel"], call.response["channel"])
            return f"[{where}] {text}{_buttons(call.params)}{_who_pays(call.params)}"
        if call.method == "chat.update":
            where = self.where.get(call.params["channel"], "?")
            return f"[{where}, card updated] {text}{_who_pays(call.params)}"
        if call.method in ("response_url", "chat.postEphemeral"):
            return f"[only {who} sees] {text}"
        if call.method == "views.open":
            return f"[a form opens for {who}: {call.params['view']['title']['text']}]"
        if call.method == "files.completeUploadExternal":
            return self._files(call)
        return None

    def _files(self, call: Call) -> str:
        """Files shared in a DM: the comment, then each file's name and first lines."""
        where = self.where.get(call.params["channel_id"], call.params["channel_id"])
        ids = {f["id"] for f in json.loads(call.params["files"])}
        lines = [f"[files in the {where}] {_names(call.params.get('initial_comment', ''))}"]
        for shared in self.fake.files(call.params["channel_id"]):
            if shared.id in ids:
                every = shared.content.splitlines()
                head = [line for line in every if line.strip() and not line.startswith("#")]
                lines.append(f"      {shared.filename} ({len(every)} lines):")
                lines += [f"        {line}" for line in head[:FILE_LINES]]
        return "\n".join(lines)


def _buttons(params: dict[str, Any]) -> str:
    """The buttons under a message, and its menus (the one chosen, or what it asks)."""
    labels = [
        _label(element)
        for block in params.get("blocks") or []
        if block.get("type") == "actions"
        for element in block["elements"]
    ]
    return f"  [buttons: {' | '.join(labels)}]" if labels else ""


def _who_pays(params: dict[str, Any]) -> str:
    """A card's donor, why it was chosen and what stopped the others, and what the capacity
    calendar holds during the request (where a limit is set), on lines of their own."""
    lines = []
    for block in params.get("blocks") or []:
        for item in block.get("fields") or block.get("elements") or []:
            text = str(item.get("text", "")) if isinstance(item, dict) else ""
            label, _, value = text.partition("\n")
            if label in ("*Donor*", "*Why this donor*") or (
                label == "*Capacity calendar*" and value != "no limit set"
            ):
                lines.append(f"{label.strip('*')}: {value}")
            elif text.startswith("Other donors: "):
                lines.append(text)
    return "".join(f"\n      {_names(line)}" for line in lines)


def _label(element: dict[str, Any]) -> str:
    if element["type"] != "static_select":
        return element["text"]["text"]
    chosen = element.get("initial_option") or {"text": element["placeholder"]}
    others = [o["text"]["text"] for o in element.get("options", []) if o != chosen]
    return f"menu: {chosen['text']['text']} (or {', '.join(others)})" if others else (
        f"menu: {chosen['text']['text']}"
    )  # fmt: skip


class Story:
    def __init__(
        self,
        ctx: AppContext,
        fake: FakeSlack,
        sender: SlackSender,
        clock: DemoClock,
        shapes: tuple[tuple[str, str], tuple[str, str]] = PACKET_SHAPES,
        observe: Callable[[], str] | None = None,
        many: str | None = None,
        idle: bool = False,
    ) -> None:
        self.ctx, self.fake, self.sender, self.clock = ctx, fake, sender, clock
        self.idle = idle  # tell the idle servers' step
        self.small, self.large = (" ".join(shape) for shape in shapes)
        self.observe = observe  # the provider's own view, printed after each sweep
        self.many = many  # a lease too large for one message (count plan metro duration)
        self.transcript = Transcript(fake)

    # -- what people do ------------------------------------------------------------------------

    def type(self, who: str, text: str) -> str:
        self._heading(who, f"/lab {text}")
        ack = self.sender.slash_command(text=text, user_id=who)
        if ack.text:
            print(f"    [only {NAMES[who]} sees] {_names(ack.json().get('text', ''))}")
        return self._settle(who)

    def click_card(self, who: str, action: str, lease_id: int) -> None:
        channel, ts = self._card(lease_id)
        self._heading(who, f"clicks {action.split('_')[-1].title()} on the card of #{lease_id}")
        self.sender.block_action(
            f"{action}:{lease_id}", str(lease_id), who, channel_id=channel, message_ts=ts
        )
        self._settle(who)

    def click_dm(self, who: str, action: str, value: str, label: str) -> None:
        self._heading(who, f"clicks {label} in the DM")
        channel = self.fake.dm_channel(who)
        self.sender.block_action(f"{action}:{value}", value, who, channel_id=channel)
        self._settle(who)

    def submit(self, who: str, callback_id: str, block_id: str, text: str) -> None:
        opened = self.fake.calls("views.open")[-1].params["view"]
        self._heading(who, f'fills in the form: "{text}"')
        self.sender.view_submission(
            callback_id,
            {block_id: {modals.VALUE: field(text)}},
            who,
            private_metadata=opened.get("private_metadata", ""),
        )
        self._settle(who)

    def wait(self, label: str, **delta: float) -> None:
        self.clock.now += timedelta(**delta)
        report = sweep(self.ctx.lab, self.clock.now)
        steps = ", ".join(f"#{i} {what}" for i, what in report.stepped) or "nothing due"
        print(f"\n{self.clock.now:%a %d %b %H:%M} — sweep ({label}): {steps}")
        self.transcript.show(None)
        if self.observe is not None:
            print(f"    {self.observe()}")

    # -- plumbing ------------------------------------------------------------------------------

    def _heading(self, who: str, what: str) -> None:
        print(f"\n{self.clock.now:%a %d %b %H:%M} — {NAMES[who]}: {what}")

    def _settle(self, who: str) -> str:
        """Wait for the listener's after-ack work, print it, and return the last answer."""
        self.ctx.settle()
        self._courier()
        answers = [c.params.get("text", "") for c in self.fake.calls("response_url")]
        self.transcript.show(who)
        return answers[-1] if answers else ""

    def _courier(self) -> None:
        """What `labbot serve`'s courier does every second: notices that waited for a
        channel's pace (requests filed within the same second) go out in the seconds after a
        step, before anyone acts on them. The story's clock moves in minutes and stays put."""
        lab = self.ctx.lab
        for second in range(1, COURIER_SECONDS + 1):
            if not undelivered(lab.db):
                return
            later = self.clock.now + second * COURIER_EVERY
            deliver(lab.db, lab.notifier, later, owner=lab.replica)

    def _card(self, lease_id: int) -> tuple[str, str]:
        block_id = f"review:{lease_id}"
        for call in self.fake.calls("chat.postMessage"):
            if call.ok and any(
                b.get("block_id") == block_id for b in call.params.get("blocks") or []
            ):
                return call.response["channel"], call.response["ts"]
        raise RuntimeError(f"no card for #{lease_id}")

    # -- the story -----------------------------------------------------------------------------

    def _count_costing(self, cents: int, hours: int) -> int:
        """How many of the large plan cost about `cents` for `hours` (plus the grace hour)."""
        hourly = self.ctx.lab.plans().plans[self.large.split()[0]].hourly_cents
        return min(self.ctx.lab.policy.max_servers, -(-cents // (hourly * (hours + 1))))

    def run(self) -> None:
        self.type(ALICE, f"keys add {public_key('alice', 'alice@laptop')}")
        self.type(CAROL, f"keys add {public_key('carol', 'carol@workstation')}")
        first = _lease_id(
            self.type(
                ALICE,
                f"request 3 {self.small} 48h project=coredns class=foundation "
                'repo=https://github.com/coredns/coredns "scale tests of the kubernetes plugin" '
                "with=@carol",
            )
        )
        self.type(
            ALICE,
            f"request 1 {self.small} 4h project=left-pad class=member org=Globex "
            'repo=https://github.com/left-pad/left-pad "a quick benchmark"',
        )
        bob_key = public_key("bob", "bob@ci")
        big = _lease_id(
            self.type(
                BOB,
                f"request 100 {self.large} 14d project=envoy class=foundation "
                f'repo=https://github.com/envoyproxy/envoy "a month of ARM CI" key="{bob_key}"',
            )
        )
        odd = _lease_id(
            self.type(
                BOB,
                f"request 2 {self.large} 12h project=envoy "
                f'repo=https://github.com/envoyproxy/envoy "mine cryptocurrency" key="{bob_key}"',
            )
        )
        self.clock.now += timedelta(minutes=20)
        self.click_card(BOB, cards.APPROVE, big)
        self.click_card(RITA, cards.DENY, odd)
        self.submit(RITA, modals.DENY, "reason", "not what the lab is for")
        self.click_card(RITA, cards.APPROVE, big)
        self.type(RITA, "queue")
        self.click_card(RITA, cards.APPROVE, first)
        self.click_card(ADA, cards.APPROVE, first)
        self.click_card(RITA, cards.DENY, big)
        self.submit(RITA, modals.DENY, "reason", "too big for one month; split it")
        scale = _lease_id(
            self.type(
                BOB,
                f"request {self._count_costing(2_050_000, 12 * 24)} {self.large} 12d "
                "project=envoy class=foundation "
                f'repo=https://github.com/envoyproxy/envoy "load tests at scale" key="{bob_key}"',
            )
        )
        self.click_card(RITA, cards.APPROVE, scale)
        if self.many:
            conformance = _lease_id(
                self.type(
                    BOB,
                    f"request {self.many} project=envoy class=foundation "
                    'repo=https://github.com/envoyproxy/envoy "a conformance run on many nodes" '
                    f'key="{bob_key}"',
                )
            )
            self.click_card(RITA, cards.APPROVE, conformance)
        self.wait("servers come up", minutes=5)
        self.wait("a day before the end", hours=24)
        self.type(CAROL, f"extend {first} 12h")
        self.wait("an hour before the new end", hours=35)
        self.wait("nobody answered the last reminder", minutes=30)
        self.wait("the lease ends", minutes=30)
        self.wait("grace is over", hours=1, minutes=1)
        self.wait("deletes confirmed", minutes=1)
        self.click_dm(ALICE, dms.WRITEUP, str(first), "Send the write-up link")
        self.submit(ALICE, modals.WRITEUP, "url", "https://coredns.io/blog/lab-scale-tests")
        if len(self.ctx.lab.policy.donors()) > 1:
            self.two_donors()
        self.across_metros()
        if self.ctx.lab.policy.capacity:
            self.capacity()
        self.busy_morning()
        self.type(ADA, f"show {first}")
        self.type(ADA, "credit")
        self.check_books()
        self.book_ahead()
        if self.idle:
            self.idle_servers()

    def two_donors(self) -> None:
        """Whose money pays: an Arm request goes to armco (it asks less for Arm servers), an x86
        one to cncf (armco pays only for Arm); a large Arm lease fills most of armco's month, so
        the next Arm request goes to cncf; the month's books show each donor."""
        print(
            f"\n{self.clock.now:%a %d %b %H:%M} — the lab has two donors: cncf "
            f"({format_cents(CNCF.monthly_grant_cents)} a month, any server) and armco "
            f"({format_cents(ARMCO.monthly_grant_cents)} a month, Arm servers only, at "
            f"{ARMCO_PRICES}% of the list price)"
        )
        for who, ask in (
            (DANA, '2 c1.large.arm ams1 24h project=kubevirt "Arm builds"'),
            (ELI, '4 c1.small.x86 ams1 24h project=falco "driver tests"'),
            (FAY, '20 c1.large.arm ams1 9d project=linkerd "a week of Arm soak tests"'),
            (GUS, '8 c1.large.arm ams1 4d project=vitess "Arm release tests"'),
        ):
            name, project = CROWD[who]
            lease_id = _lease_id(
                self.type(
                    who,
                    f"request {ask} repo=https://github.com/{project}/{project} "
                    f'key="{public_key(name, "ci")}"',
                )
            )
            self.click_card(RITA, cards.APPROVE, lease_id)
        self.wait("the donors' servers come up", minutes=5)
        self.wait("the donors' servers run", hours=6)

    def capacity(self) -> None:
        """The capacity calendar: with 8 of the 10 servers the lab may hold in the metro taken
        for two days, a request for 4 more is refused with the first moment it would not fit and
        the next window that does, and the calendar shows why."""
        plan, metro, most = CAPACITY
        print(
            f"\n{self.clock.now:%a %d %b %H:%M} — the lab may hold at most {most} {plan} in "
            f"{metro} at once ([capacity] in the configuration)"
        )
        asks = ((HAL, 8, "48h", "a storage benchmark"), (IVY, 4, "24h", "query load tests"))
        for n, (who, count, length, why) in enumerate(asks):
            name, project = CROWD[who]
            answer = self.type(
                who,
                f'request {count} {plan} {metro} {length} project={project} "{why}" '
                f'repo=https://github.com/{project}/{project} key="{public_key(name, "ci")}"',
            )
            if n == 0:
                self.click_card(RITA, cards.APPROVE, _lease_id(answer))
                self.wait(f"{name}'s servers come up", minutes=5)
        self.type(IVY, f"calendar {plan} {metro}")

    def across_metros(self) -> None:
        """One test, many metros: a request for servers in three metros at once is one lease,
        approved, provisioned in each metro, listed by metro, and reclaimed whole."""
        plan, metros = self._three_metros()
        print(f"\n{self.clock.now:%a %d %b %H:%M} — one test across {len(metros)} metros")
        lease_id = _lease_id(
            self.type(
                ALICE,
                f"request {plan} 24h metro={','.join(metros)} count=2 project=coredns "
                'repo=https://github.com/coredns/coredns "DNS latency between the metros"',
            )
        )
        self.click_card(RITA, cards.APPROVE, lease_id)
        self.wait("the servers come up in every metro", minutes=5)
        self.type(ALICE, f"show {lease_id}")
        self.type(ALICE, f"release {lease_id}")
        self.wait("deletes confirmed in every metro", minutes=1)

    def busy_morning(self) -> None:
        """Thirty requests arrive (told in one line, not ninety), and the reviewer's lists show
        a page at a time, saying how many more there are and how to see them."""
        print(f"\n{self.clock.now:%a %d %b %H:%M} — thirty requests arrive from ten projects")
        for user, (name, project) in CROWD.items():
            key = public_key(name, "ci")
            for hours in (4, 8, 24):
                self.sender.slash_command(
                    text=f"request 1 {self.small} {hours}h project={project} "
                    f'repo=https://github.com/{project}/{project} "integration tests" key="{key}"',
                    user_id=user,
                )
        self.ctx.settle()
        calls = self.fake.calls()
        posted = sum(c.method == "chat.postMessage" for c in calls[self.transcript.seen :])
        self.transcript.seen = len(calls)
        print(f"    ({posted} cards and DMs posted; the transcript skips them)")
        self._heading(RITA, "opens App Home")
        self.sender.event({"type": "app_home_opened", "user": RITA, "tab": "home"})
        self.ctx.settle()
        more = self.show_queue_on_home(RITA)
        self._heading(RITA, "clicks More under Waiting for review")
        self.sender.block_action(f"{home.MORE}:{more}", more, RITA, view=self._home(RITA))
        self.ctx.settle()
        self.show_queue_on_home(RITA)
        self.type(RITA, "queue")
        self.type(RITA, "queue 2")

    def idle_servers(self) -> None:
        """Two leases nobody uses: their servers report every five minutes (written here as
        their reports are kept), quiet; after six hours each owner is asked; alice still uses
        hers; nobody answers for bob's, the reviewers are told after twelve hours, and after
        twenty-four (this lab's LABBOT_IDLE_RECLAIM) it is released early with its refund."""
        key = public_key("bob", "ci")
        kept = _lease_id(
            self.type(
                ALICE,
                f"request 2 {self.small} 3d project=coredns "
                'repo=https://github.com/coredns/coredns "soak tests"',
            )
        )
        left = _lease_id(
            self.type(
                BOB,
                f"request 1 {self.small} 3d project=envoy "
                f'repo=https://github.com/envoyproxy/envoy "a benchmark" key="{key}"',
            )
        )
        self.click_card(RITA, cards.APPROVE, kept)
        self.click_card(RITA, cards.APPROVE, left)
        self.wait("the servers come up", minutes=5)
        print(
            f"\n{self.clock.now:%a %d %b %H:%M} — #{kept} and #{left}'s servers report every "
            "five minutes: CPU 1%, a few KB of traffic, nobody logged in"
        )
        self.quiet([kept, left], hours=6, minutes=5)
        self.wait("six hours without use", hours=6, minutes=5)
        self.click_dm(ALICE, dms.IDLE_KEEP, f"{kept}-1", "Still using it")
        self.quiet([kept, left], hours=12)
        self.wait("nobody answered bob's question", hours=12)
        self.quiet([kept, left], hours=12, minutes=5)
        self.wait("a day after the question", hours=12, minutes=5)
        self.wait("deletes confirmed", minutes=1)

    def quiet(self, lease_ids: list[int], **span: float) -> None:
        """Each running server of the leases reports, every five minutes from now until `span`
        from now, that nothing used it: kept as the servers' own reports are
        (commands.activity.record, what `POST /activity` writes)."""
        until = self.clock.now + timedelta(**span)
        lab = self.ctx.lab
        with lab.db.read() as session:
            servers = session.exec(
                select(Server.id, Server.lease_id).where(
                    col(Server.lease_id).in_(lease_ids), Server.state == ServerState.ACTIVE
                )
            ).all()
        report = ActivityReport(
            interval_s=int(REPORT_EVERY.total_seconds()),
            cpu_busy=0.01,
            load_1m=0.02,
            net_bytes=20_000,
            sessions=0,
        )
        ats = []
        at = self.clock.now + REPORT_EVERY
        while at <= until:
            ats.append(at)
            at += REPORT_EVERY
        record(
            lab,
            (
                sample(Reporter(server_id, lease_id), report, at)
                for at in ats
                for server_id, lease_id in servers
            ),
        )

    def book_ahead(self) -> None:
        """A booking for tomorrow across three metros (issue 22): alice, in Amsterdam, books two
        servers in each from 09:00 her time; rita approves it ahead; the sweep prepares them the
        lead time before the start, so they are ready, listed by metro, when it opens."""
        self.fake.set_zone(ALICE, "Europe/Amsterdam")
        print(f"\n{self.clock.now:%a %d %b %H:%M} — alice's Slack is set to Europe/Amsterdam")
        plan, metros = self._three_metros()
        booking = _lease_id(
            self.type(
                ALICE,
                f"request {plan} 8h metro={','.join(metros)} count=2 project=coredns "
                'class=foundation repo=https://github.com/coredns/coredns "a release benchmark" '
                'from="tomorrow 09:00"',
            )
        )
        self.click_card(RITA, cards.APPROVE, booking)
        lab = self.ctx.lab
        with lab.db.read() as session:
            start = session.get(Lease, booking).book_start
        prepare = lab.policy.prepare_from(start)
        ahead = (prepare - self.clock.now).total_seconds()
        self.wait("the lead time before the booking's start", seconds=ahead)
        self.wait("the booking's servers come up", minutes=5)
        self.type(ALICE, f"show {booking}")

    def _three_metros(self) -> tuple[str, list[str]]:
        """The small plan and the first three metros that offer it."""
        catalog = self.ctx.lab.plans()
        plan = self.small.split()[0]
        return plan, [m for m in catalog.metros if catalog.plan_available(plan, m)][:3]

    def _home(self, who: str) -> dict[str, Any]:

        calls = self.fake.calls("views.publish")
        return next(c for c in reversed(calls) if c.params["user_id"] == who).response["view"]

    def show_queue_on_home(self, who: str) -> str:
        """Print the queue on a reviewer's App Home (its last section) as they see it, a line
        a request; return the value of its More button."""
        blocks = self._home(who)["blocks"]
        last = max(i for i, block in enumerate(blocks) if block["type"] == "header")
        more = ""
        for block in blocks[last + 1 :]:
            if block["type"] == "context":
                print(f"    [App Home of {NAMES[who]}] {block['elements'][0]['text']}")
            elif block["type"] == "section":
                print(f"      {_names(block['text']['text'].splitlines()[0])[:110]}")
            elif block.get("block_id") == f"more:{home.PENDING}":
                labels = {e["text"]["text"]: e["value"] for e in block["elements"]}
                more = next((v for label, v in labels.items() if label.startswith("More")), "")
                print(f"      [buttons: {' | '.join(labels)}]")
        self.transcript.seen = len(self.fake.calls())
        return more

    def check_books(self) -> None:
        """The story ends on the month's books, which must balance to the cent."""
        books = credit_report(self.ctx.lab, self.clock.now).lab
        total = books.spent + books.committed + books.available
        verdict = "balance" if total == books.granted else "DO NOT BALANCE"
        print(
            f"\nThe books {verdict}: granted {format_cents(books.granted)} = spent "
            f"{format_cents(books.spent)} + committed {format_cents(books.committed)} + "
            f"available {format_cents(books.available)}."
        )


def _lease_id(answer: str) -> int:
    found = re.search(r"#(\d+)", answer)
    if found is None:
        raise RuntimeError(f"the story expected a lease number in: {answer}")
    return int(found[1])
