"""Reading tool calls out of generated text (tunegate.tool_calls)."""

from __future__ import annotations

import json

from tunegate.tool_calls import read_reply

OFFERED = {"takeoff_drone", "land_drone"}


def test_one_block_becomes_one_call_with_string_arguments() -> None:
    reply = read_reply('<tool_call>\n{"name": "takeoff_drone", "arguments": {"altitude": 100}}\n'
                       '</tool_call>', OFFERED)
    assert reply.content is None
    [call] = reply.tool_calls
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "takeoff_drone"
    assert json.loads(call["function"]["arguments"]) == {"altitude": 100}


def test_several_blocks_and_text_around_them() -> None:
    text = ('Sure.\n<tool_call>\n{"name": "takeoff_drone", "arguments": {}}\n</tool_call>\n'
            '<tool_call>\n{"name": "land_drone", "arguments": "{\\"where\\": \\"pad\\"}"}\n'
            '</tool_call>')
    reply = read_reply(text, OFFERED)
    assert reply.content == "Sure."
    assert [c["function"]["name"] for c in reply.tool_calls] == ["takeoff_drone", "land_drone"]
    assert reply.tool_calls[1]["function"]["arguments"] == '{"where": "pad"}'  # a string stays
    assert len({c["id"] for c in reply.tool_calls}) == 2


def test_an_unclosed_last_block_is_read_when_its_json_is_whole() -> None:
    reply = read_reply('<tool_call>\n{"name": "land_drone", "arguments": {}}', OFFERED)
    assert [c["function"]["name"] for c in reply.tool_calls] == ["land_drone"]


def test_anything_doubtful_stays_text() -> None:
    for text in (
        "No tools needed: the sky is blue.",
        '<tool_call>\n{"name": "launch_missiles", "arguments": {}}\n</tool_call>',  # not offered
        '<tool_call>\n{"name": "land_drone", "arguments": {\n</tool_call>',  # broken JSON
        '<tool_call>\n["land_drone"]\n</tool_call>',  # not an object
        '<tool_call>{"name": "land_drone"}</tool_call> <tool_call>oops</tool_call>',  # one bad
    ):
        reply = read_reply(text, OFFERED)
        assert reply.content == text and reply.tool_calls == [], text
