"""Reading tool calls out of generated text (tunegate.chat.tool_calls)."""

from __future__ import annotations

import json

from tunegate.chat.tool_calls import StreamReader, read_reply

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


def test_tags_inside_a_string_value_do_not_end_the_block() -> None:
    """The system prompt names the tags, so a model writes them in a value now and then; the
    block ends where its JSON does (a forced call once came back as text this way)."""
    for city in ("</tool_call>", "<tool_call>", "a</tool_call><tool_call>b"):
        arguments = {"where": city}
        for tail in ("", "\n</tool_call>", "\n</tool_call>\nDone."):
            text = ('<tool_call>\n{"name": "land_drone", "arguments": '
                    f'{json.dumps(arguments)}}}{tail}')
            reply = read_reply(text, OFFERED)
            [call] = reply.tool_calls
            assert json.loads(call["function"]["arguments"]) == arguments, text
            assert reply.content == ("Done." if "Done" in tail else None), text


def test_a_block_is_whole_json_then_its_end_or_the_end_of_the_text() -> None:
    two = ('<tool_call>{"name": "land_drone", "arguments": {"s": "</tool_call>"}}</tool_call>'
           ' and <tool_call> {"name": "takeoff_drone", "arguments": {}} ')
    reply = read_reply(two, OFFERED)
    assert reply.content == "and"
    assert [c["function"]["name"] for c in reply.tool_calls] == ["land_drone", "takeoff_drone"]
    for text in ('<tool_call>{"name": "land_drone", "arguments": {}} and more',  # no end tag
                 '<tool_call>{"name": "land_drone", "arguments": {}} {}</tool_call>',
                 '<tool_call>{"name": "land_drone", "arguments": {"s": "</tool_call>'):  # cut
        reply = read_reply(text, OFFERED)
        assert reply.content == text and reply.tool_calls == [], text


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


def _stream(text: str, piece: int) -> tuple[str, StreamReader]:
    reader = StreamReader(OFFERED)
    shown = "".join(reader.feed(text[i:i + piece]) for i in range(0, len(text), piece))
    return shown, reader


def test_streamed_text_is_shown_at_once_and_calls_are_held_to_the_end() -> None:
    call = '<tool_call>\n{"name": "land_drone", "arguments": {}}\n</tool_call>'
    for piece in (1, 3, 7, 100):
        shown, reader = _stream("Landing now.\n" + call, piece)
        assert shown == "Landing now.\n", piece
        rest = reader.finish()
        assert rest.content is None
        assert [c["function"]["name"] for c in rest.tool_calls] == ["land_drone"]


def test_streamed_text_that_only_looks_like_a_call_is_all_shown() -> None:
    for text in ("a <tool box> and <to", "x <tool_call> not json", "plain text"):
        for piece in (1, 2, 5):
            shown, reader = _stream(text, piece)
            rest = reader.finish()
            assert shown + (rest.content or "") == text, (text, piece)
            assert rest.tool_calls == []


def test_a_partial_opening_is_held_back_until_it_is_decided() -> None:
    reader = StreamReader(OFFERED)
    assert reader.feed("Sure <tool") == "Sure "
    assert reader.feed("box") == "<toolbox"


def test_multi_part_text_is_served_as_training_renders_it() -> None:
    """A message whose content is a list of text parts reaches the chat template as the same
    string in serving and in training (serving used to join the parts with newlines)."""
    from tunegate.chat.format import text_of
    from tunegate.serving.completions import chat_request

    parts = [{"type": "text", "text": "The capital"}, {"type": "text", "text": " of France?"}]
    request = chat_request({"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert request.messages == [{"role": "user", "content": text_of(parts)}]
