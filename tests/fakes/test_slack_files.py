"""The fake Slack's upload API behaves as Slack's: checked through slack_sdk's own
`files_upload_v2` (all three steps) and through each step alone, with Slack's refusals."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from fakes.slack import FakeSlack
from tests.fakes.conftest import error_of

USER = "U0OWNER"


def dm(client: WebClient) -> str:
    return client.conversations_open(users=USER)["channel"]["id"]


def post(url: str, body: bytes) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST")) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def test_files_upload_v2_shares_the_files_in_the_dm_as_sent(
    fake: FakeSlack, client: WebClient
) -> None:
    channel = dm(client)
    answer = client.files_upload_v2(
        file_uploads=[
            {"filename": "a.csv", "content": "hostname\nweb-1\n", "title": "Servers"},
            {"filename": "ssh_config", "content": "Host web-1\n", "title": "SSH config"},
        ],
        channel=channel,
        initial_comment="Every server, in two files.",
    )
    assert [f["title"] for f in answer["files"]] == ["Servers", "SSH config"]
    shared = fake.files(channel)
    assert [(f.filename, f.title, f.content) for f in shared] == [
        ("a.csv", "Servers", "hostname\nweb-1\n"),
        ("ssh_config", "SSH config", "Host web-1\n"),
    ]
    assert {f.comment for f in shared} == {"Every server, in two files."}
    info = client.files_info(file=shared[0].id)["file"]
    assert info["ims"] == [channel] and info["size"] == len("hostname\nweb-1\n")


def test_an_upload_url_is_asked_for_with_a_name_and_a_length(client: WebClient) -> None:
    assert error_of(lambda: client.api_call("files.getUploadURLExternal", params={})) == (
        "invalid_arguments"
    )
    assert error_of(lambda: client.files_getUploadURLExternal(filename="a", length=0)) == (
        "missing_argument"
    )
    slot = client.files_getUploadURLExternal(filename="a.csv", length=5)
    assert slot["file_id"].startswith("F") and slot["upload_url"].startswith("http://127.0.0.1")


def test_the_upload_url_takes_exactly_the_announced_bytes(
    fake: FakeSlack, client: WebClient
) -> None:
    slot = client.files_getUploadURLExternal(filename="a.csv", length=5)
    assert post(slot["upload_url"], b"too long") == 400
    assert post(slot["upload_url"].rsplit("/", 1)[0] + "/F404", b"12345") == 404
    assert post(slot["upload_url"], b"12345") == 200
    assert [c.status for c in fake.calls("upload")] == [400, 404, 200]


def test_completing_checks_the_files_and_the_channel(fake: FakeSlack, client: WebClient) -> None:
    channel = dm(client)
    slot = client.files_getUploadURLExternal(filename="a.csv", length=5)
    file = [{"id": slot["file_id"], "title": "a"}]
    assert error_of(lambda: client.files_completeUploadExternal(files=[])) == "invalid_arguments"
    assert (
        error_of(  # announced, never uploaded
            lambda: client.files_completeUploadExternal(files=file, channel_id=channel)
        )
        == "file_not_found"
    )
    assert (
        error_of(
            lambda: client.files_completeUploadExternal(files=[{"id": "F0"}], channel_id=channel)
        )
        == "file_not_found"
    )
    post(slot["upload_url"], b"12345")
    assert (
        error_of(  # a DM the bot never opened
            lambda: client.files_completeUploadExternal(files=file, channel_id="D0NOBODY")
        )
        == "channel_not_found"
    )
    assert error_of(lambda: client.files_info(file="F0")) == "file_not_found"
    client.files_completeUploadExternal(files=file, channel_id=channel)
    assert [f.content for f in fake.files(channel)] == ["12345"]


def test_a_lost_completion_shares_the_files_and_answers_an_error(
    fake: FakeSlack, client: WebClient
) -> None:
    channel = dm(client)
    fake.lost_completions = 1
    with pytest.raises(SlackApiError):
        client.files_upload_v2(filename="a.csv", content="12345", channel=channel)
    [shared] = fake.files(channel)
    assert client.files_info(file=shared.id)["file"]["ims"] == [channel]
