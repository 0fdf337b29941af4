"""Slack's documented Block Kit sizes, as the fake Slack checks them in every test.

From Slack's reference pages: 50 blocks a message and 100 a view; 3,000 characters in a text
object (a section's text, a context's text); a section's fields at most 10 of 2,000 each; a
header 150; a context 10 elements; an actions block 25; a button's text 75 and value 2,000; a
static select 100 options; checkboxes and radio buttons 1 to 10; an option's text 75 and value
150; a datetimepicker's initial time a Unix timestamp (an integer); a modal's title, submit and
close 24; private_metadata 3,000; a message's text 40,000.

Each check gives the problems as Slack words them in `response_metadata.messages` (what is wrong
and a JSON pointer to where), so a test that trips one says which limit and which block; the
fake answers with them as Slack does: `invalid_blocks` or `msg_too_long` for a message,
`invalid_arguments` for a view.
"""

from __future__ import annotations

from typing import Any

MESSAGE_TEXT = 40_000
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
TEXT = 3_000
FIELDS = 10
FIELD_TEXT = 2_000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_VALUE = 2_000
SELECT_OPTIONS = 100
CHOICES = 10  # checkboxes and radio buttons
OPTION_TEXT = 75
OPTION_VALUE = 150
VIEW_TITLE = 24  # and submit, and close
PRIVATE_METADATA = 3_000

_SELECTS = ("static_select", "multi_static_select")
_CHOICES = ("checkboxes", "radio_buttons")


def message_error(params: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The error code and messages Slack gives a message body (chat.postMessage, chat.update,
    chat.postEphemeral, a response_url), in the order it reports them; None when it is fine."""
    text = params.get("text") or ""
    blocks = params.get("blocks") or []
    if not text and not blocks and not params.get("attachments"):
        return "no_text", []
    if len(text) > MESSAGE_TEXT:
        return "msg_too_long", [_longer("/text", MESSAGE_TEXT)]
    problems = blocks_problems(blocks, MESSAGE_BLOCKS, "/blocks")
    return ("invalid_blocks", problems) if problems else None


def view_problems(view: Any) -> list[str]:
    """What Slack refuses in a modal or App Home view (it answers `invalid_arguments`)."""
    if not isinstance(view, dict):
        return ["[ERROR] must be an object [json-pointer:/view]"]
    problems = [
        _longer(f"/view/{key}/text", VIEW_TITLE)
        for key in ("title", "submit", "close")
        if len(_text(view.get(key))) > VIEW_TITLE
    ]
    if len(str(view.get("private_metadata") or "")) > PRIVATE_METADATA:
        problems.append(_longer("/view/private_metadata", PRIVATE_METADATA))
    return problems + blocks_problems(view.get("blocks") or [], VIEW_BLOCKS, "/view/blocks")


def blocks_problems(blocks: Any, most: int, where: str) -> list[str]:
    if not isinstance(blocks, list):
        return [f"[ERROR] must be an array [json-pointer:{where}]"]
    if len(blocks) > most:
        return [_more(where, most)]
    return [p for i, block in enumerate(blocks) for p in _block(block, f"{where}/{i}")]


def _block(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"[ERROR] must be an object [json-pointer:{where}]"]
    kind = block.get("type")
    problems: list[str] = []
    if kind == "section":
        problems += _text_problems(block.get("text"), TEXT, f"{where}/text")
        fields = block.get("fields") or []
        if len(fields) > FIELDS:
            problems.append(_more(f"{where}/fields", FIELDS))
        for i, item in enumerate(fields):
            problems += _text_problems(item, FIELD_TEXT, f"{where}/fields/{i}")
        if isinstance(block.get("accessory"), dict):
            problems += _element(block["accessory"], f"{where}/accessory")
    elif kind == "header":
        problems += _text_problems(block.get("text"), HEADER_TEXT, f"{where}/text")
    elif kind in ("context", "actions"):
        most = CONTEXT_ELEMENTS if kind == "context" else ACTIONS_ELEMENTS
        elements = block.get("elements") or []
        if len(elements) > most:
            problems.append(_more(f"{where}/elements", most))
        for i, element in enumerate(elements):
            problems += _element(element, f"{where}/elements/{i}")
    elif kind == "input" and isinstance(block.get("element"), dict):
        problems += _element(block["element"], f"{where}/element")
    return problems


def _element(element: Any, where: str) -> list[str]:
    if not isinstance(element, dict):
        return [f"[ERROR] must be an object [json-pointer:{where}]"]
    kind = element.get("type")
    if kind in ("mrkdwn", "plain_text"):  # a context's text
        return _text_problems(element, TEXT, where)
    if kind == "button":
        problems = _text_problems(element.get("text"), BUTTON_TEXT, f"{where}/text")
        if len(str(element.get("value") or "")) > BUTTON_VALUE:
            problems.append(_longer(f"{where}/value", BUTTON_VALUE))
        return problems
    if kind in _SELECTS:
        return _options(element, where, 0, SELECT_OPTIONS)
    if kind in _CHOICES:
        return _options(element, where, 1, CHOICES) + _initial(element, where)
    if kind == "datetimepicker":
        return _date_time(element, where)
    return []


def _date_time(element: dict[str, Any], where: str) -> list[str]:
    """A datetimepicker's `initial_date_time` is a Unix timestamp in seconds (an integer of
    at most 10 digits), never a string or a date."""
    initial = element.get("initial_date_time")
    if initial is None:
        return []
    if not isinstance(initial, int) or isinstance(initial, bool) or not 0 <= initial < 10**10:
        return [
            f"[ERROR] must be an integer Unix timestamp [json-pointer:{where}/initial_date_time]"
        ]
    return []


def _options(element: dict[str, Any], where: str, fewest: int, most: int) -> list[str]:
    options = element.get("options") or []
    if not fewest <= len(options) <= most:
        return [f"[ERROR] must contain {fewest} to {most} items [json-pointer:{where}/options]"]
    problems: list[str] = []
    for i, option in enumerate(options):
        at = f"{where}/options/{i}"
        problems += _text_problems(option.get("text"), OPTION_TEXT, f"{at}/text")
        if len(str(option.get("value") or "")) > OPTION_VALUE:
            problems.append(_longer(f"{at}/value", OPTION_VALUE))
    return problems


def _initial(element: dict[str, Any], where: str) -> list[str]:
    """Checkboxes' and radio buttons' initial options must be among their options."""
    options = element.get("options") or []
    initial = element.get("initial_options") or (
        [element["initial_option"]] if element.get("initial_option") else []
    )
    return [
        f"[ERROR] must match one of the options [json-pointer:{where}/initial_options/{i}]"
        for i, option in enumerate(initial)
        if option not in options
    ]


def _text_problems(obj: Any, most: int, where: str) -> list[str]:
    return [_longer(f"{where}/text", most)] if len(_text(obj)) > most else []


def _text(obj: Any) -> str:
    return str(obj.get("text") or "") if isinstance(obj, dict) else ""


def _longer(where: str, most: int) -> str:
    return f"[ERROR] must be at most {most} characters [json-pointer:{where}]"


def _more(where: str, most: int) -> str:
    return f"[ERROR] must contain at most {most} items [json-pointer:{where}]"
