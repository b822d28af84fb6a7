"""The language-model query parser: real clients (httpx, google-genai) against local fakes of the APIs.

Nothing leaves 127.0.0.1 (tests/fakes/openai_server.py, tests/fakes/gemini_server.py), and every wait
is a fraction of a second.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("httpx", reason="the OpenAI-compatible parser needs httpx")

from promptseg.errors import ConfigError, InputError, QueryError, RemoteBackendError
from promptseg.query.llm import DEFAULT_MODELS, EXAMPLES, LLMParser, system_instruction
from promptseg.query.model import THAT, Ordinal, Query, Relation, Term, json_schema
from tests.fakes.gemini_server import FakeGemini, api_error, gemini_reply
from tests.fakes.openai_server import FakeOpenAI, Hang, Reply, chat_reply, openai_error

KEY = "test-key-123"
ENV = (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "PROMPTSEG_GEMINI_BASE_URL",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "OPENAI_API_KEY",
    "PROMPTSEG_LLM_BASE_URL",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(lifetime=20) as fake:
        yield fake


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    pytest.importorskip(
        "google.genai", reason="the Gemini parser needs google-genai: pip install 'promptseg[gemini]'"
    )
    with FakeGemini(lifetime=20) as fake:
        yield fake


def openai_parser(server: FakeOpenAI, **options: Any) -> LLMParser:
    settings: dict[str, Any] = {"base_url": server.base_url, "timeout": 2, "retry_budget": 0.5}
    return LLMParser("openai", **{**settings, **options})


def gemini_parser(server: FakeGemini, **options: Any) -> LLMParser:
    settings: dict[str, Any] = {
        "api_key": KEY,
        "base_url": server.base_url,
        "timeout": 2,
        "retry_budget": 0.5,
    }
    return LLMParser("gemini", **{**settings, **options})


def ok(content: str | dict[str, Any]) -> Reply:
    return Reply(body=chat_reply(content if isinstance(content, str) else json.dumps(content)))


BOOK = {"include": [{"concept": "book", "ordinal": {"n": 3, "direction": "left"}}]}
HELMET = {
    "include": [
        {
            "concept": "person",
            "plural": True,
            "relations": [{"kind": "wearing", "target": {"concept": "helmet"}, "negated": True}],
        }
    ]
}


def test_examples_validate_and_are_in_the_instruction() -> None:
    instruction = system_instruction()
    assert 6 <= len(EXAMPLES) <= 10
    for ex in EXAMPLES:
        query = Query.from_dict(ex.answer)  # raises QueryError naming the field when an example is wrong
        assert query.to_dict() == dict(ex.answer), f"{ex.prompt!r}: not in canonical to_dict form"
        if ex.previous is not None:
            Query.from_dict(ex.previous)
        assert json.dumps(ex.answer) in instruction
        assert json.dumps(ex.prompt) in instruction
    assert json.dumps(json_schema()) in instruction
    assert {ex.answer.get("refer", "new") for ex in EXAMPLES} >= {"new", "narrow", "add", "other"}
    assert any(THAT in json.dumps(ex.answer) for ex in EXAMPLES)


@pytest.mark.parametrize(
    ("prompt", "reply", "expected"),
    [
        # bare JSON
        (
            "the third book from the left",
            json.dumps(BOOK),
            Query(include=(Term("book", ordinal=Ordinal(3, "left")),), prompt="the third book from the left"),
        ),
        # a Markdown fence with prose around it, as chat models like to answer
        (
            "people without a helmet",
            f"Sure! Here is the query:\n```json\n{json.dumps(HELMET, indent=2)}\n```\nAsk {{anything}}.",
            Query(
                include=(
                    Term("person", plural=True, relations=(Relation("wearing", Term("helmet"), True),)),
                ),
                prompt="people without a helmet",
            ),
        ),
        # prose with a stray brace before the object; concept case and spaces normalised by from_dict
        (
            "all chairs except the red one",
            'The {answer} is {"include": [{"concept": " Chair ", "plural": true, '
            '"exclude": [{"concept": "chair", "colors": ["red"]}]}]} -- done',
            Query(
                include=(Term("chair", plural=True, exclude=(Term("chair", colors=("red",)),)),),
                prompt="all chairs except the red one",
            ),
        ),
        # two terms, a between relation, and the model's own "prompt" overridden by ours
        (
            "bags and the mug between the laptop and the phone",
            json.dumps(
                {
                    "prompt": "something else",
                    "include": [
                        {"concept": "bag", "plural": True},
                        {
                            "concept": "mug",
                            "relations": [
                                {
                                    "kind": "between",
                                    "target": {"concept": "laptop"},
                                    "second": {"concept": "phone"},
                                }
                            ],
                        },
                    ],
                }
            ),
            Query(
                include=(
                    Term("bag", plural=True),
                    Term("mug", relations=(Relation("between", Term("laptop"), second=Term("phone")),)),
                ),
                prompt="bags and the mug between the laptop and the phone",
            ),
        ),
    ],
)
def test_openai_reply_becomes_the_query(openai: FakeOpenAI, prompt: str, reply: str, expected: Query) -> None:
    openai.add(ok(reply))
    with openai_parser(openai) as parser:
        assert parser.parse(prompt) == expected
        assert parser.last_usage == {
            "requests": 1,
            "prompt_tokens": 2200,
            "output_tokens": 40,
            "total_tokens": 2240,
        }

    (request,) = openai.requests
    assert request.path == "/v1/chat/completions"
    assert request.api_key is None  # a local server: no key, no Authorization header
    body = request.json
    assert body["model"] == DEFAULT_MODELS["openai"]
    assert body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system == {"role": "system", "content": system_instruction()}
    assert user == {"role": "user", "content": f"Prompt: {json.dumps(prompt)}"}


def test_notes_come_through(openai: FakeOpenAI) -> None:
    openai.add(ok({"include": [{"concept": "cup", "colors": ["red"]}], "notes": ["ignored 'shiny'"]}))
    query = openai_parser(openai).parse("the shiny red cup")
    assert query.notes == ("ignored 'shiny'",)
    assert query.include == (Term("cup", colors=("red",)),)


def test_previous_query_is_sent_for_follow_ups(openai: FakeOpenAI) -> None:
    previous = Query.from_dict(
        {"include": [{"concept": "cup", "plural": True}], "notes": ["a note"]}, prompt="the cups"
    )
    openai.add(ok({"include": [{"concept": "@that", "region": "left", "count": 1}], "refer": "narrow"}))
    parser = openai_parser(openai)
    query = parser(  # a parser is also a plain callable
        "only the left one", previous=previous
    )
    assert query == Query(
        include=(Term(THAT, region="left", count=1),), refer="narrow", prompt="only the left one"
    )
    user = openai.requests[0].messages[-1]["content"]
    sent = {"include": [{"concept": "cup", "plural": True}], "prompt": "the cups"}  # notes are not sent
    assert user == f'Previous query: {json.dumps(sent)}\nPrompt: "only the left one"'


def test_invalid_reply_is_retried_once_with_the_error(openai: FakeOpenAI) -> None:
    bad = json.dumps({"include": [{"concept": "book", "region": "upper"}]})
    openai.add(ok(bad), ok(BOOK))
    parser = openai_parser(openai)
    assert parser.parse("the book up there").include == (Term("book", ordinal=Ordinal(3, "left")),)
    assert parser.last_usage == {
        "requests": 2,
        "prompt_tokens": 4400,
        "output_tokens": 80,
        "total_tokens": 4480,
    }

    first, second = openai.requests
    assert second.messages[:2] == first.messages
    assert second.messages[2] == {"role": "assistant", "content": bad}
    correction = second.messages[3]
    assert correction["role"] == "user"
    assert "include[0].region" in correction["content"] and "'upper'" in correction["content"]


def test_reply_that_is_not_json_twice_raises_with_the_raw_reply(openai: FakeOpenAI) -> None:
    openai.add(ok("I cannot help with that."), ok("Sorry, I still cannot."))
    with pytest.raises(QueryError) as info:
        openai_parser(openai).parse("cups")
    message = str(info.value)
    assert "openai:gpt-4o-mini" in message and "not a JSON object" in message
    assert "\n" not in message
    assert info.value.raw_response == "Sorry, I still cannot."  # type: ignore[attr-defined]
    assert len(openai.requests) == 2
    assert "not a JSON object" in openai.requests[1].messages[-1]["content"]


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        (
            {"include": [{"concept": "cup", "colour": "red"}]},
            "include[0]: unknown field 'colour'",
        ),  # British key
        ({"include": [{"concept": "cup", "region": "upper"}]}, "include[0].region"),  # not a region
        ({"include": [{"concept": "cup", "ordinal": {"n": "third"}}]}, "include[0].ordinal.n"),  # a word
        (  # "under" is read as "below", not a kind of its own
            {"include": [{"concept": "cat", "relations": [{"kind": "under", "target": {"concept": "bed"}}]}]},
            "include[0].relations[0].kind",
        ),
        ({"include": [{"concept": "cup", "colors": ["navy"]}]}, "include[0].colors[0]"),  # off the palette
        ({"include": []}, "query.include"),  # nothing to look for
        ([{"concept": "cup"}], "query: expected an object"),  # a list, not the query object
    ],
)
def test_invalid_query_twice_names_the_field(openai: FakeOpenAI, answer: Any, field: str) -> None:
    openai.add(ok(json.dumps(answer)), ok(json.dumps(answer)))
    with pytest.raises(QueryError, match="not a valid query after 2 attempts") as info:
        openai_parser(openai).parse("a prompt")
    assert field in str(info.value)
    assert info.value.raw_response == json.dumps(answer)  # type: ignore[attr-defined]


def test_429_is_retried_after_the_wait_the_server_asks(openai: FakeOpenAI) -> None:
    openai.add(openai_error(429, "Rate limit reached", error_type="requests", headers={"Retry-After": "0.1"}))
    openai.add(ok(BOOK))
    start = time.monotonic()
    assert openai_parser(openai).parse("the third book").include[0].concept == "book"
    assert 0.1 <= time.monotonic() - start < 0.4  # the server's wait, not the 0.5 s default
    assert len(openai.requests) == 2


def test_a_wait_beyond_the_budget_is_not_waited(openai: FakeOpenAI) -> None:
    openai.add(openai_error(429, "Rate limit reached", headers={"Retry-After": "30"}), ok(BOOK))
    start = time.monotonic()
    with pytest.raises(RemoteBackendError, match=r"30 s wait, beyond retry_budget=0\.5 s") as info:
        openai_parser(openai).parse("cups")
    assert time.monotonic() - start < 1
    assert info.value.status == 429
    assert len(openai.requests) == 1


def test_500_forever_fails_after_one_retry(openai: FakeOpenAI) -> None:
    openai.add(*[openai_error(500, "The server had an error", error_type="server_error")] * 3)
    with pytest.raises(RemoteBackendError) as info:
        openai_parser(openai, retry_budget=0.05).parse("cups")
    message = str(info.value)
    assert "failed 2 attempts" in message and "HTTP 500: The server had an error" in message
    assert info.value.status == 500
    assert json.loads(info.value.raw_response or "")["error"]["type"] == "server_error"
    assert len(openai.requests) == 2


def test_401_is_not_retried(openai: FakeOpenAI) -> None:
    openai.add(openai_error(401, "Incorrect API key provided: sk-wrong", code="invalid_api_key"), ok(BOOK))
    with pytest.raises(RemoteBackendError) as info:
        openai_parser(openai, api_key="sk-wrong").parse("cups")
    assert "HTTP 401: Incorrect API key provided: sk-wrong; check the API key (OPENAI_API_KEY)" in str(
        info.value
    )
    assert info.value.status == 401
    assert len(openai.requests) == 1
    assert openai.requests[0].api_key == "sk-wrong"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply(status=404, body={"error": "model 'llama9' not found"}),
            "HTTP 404: model 'llama9' not found",
        ),  # Ollama
        (Reply(status=400, body={"object": "error", "message": "bad"}), "HTTP 400: bad"),  # older vLLM
        (Reply(status=400, body="<html>Bad Request</html>"), "HTTP 400: <html>Bad Request</html>"),  # a proxy
        (Reply(body="<html>hello</html>"), "not a chat completion"),  # 200, but not the API
        (Reply(body={"choices": []}), "not a chat completion"),
    ],
)
def test_server_errors_of_other_shapes(openai: FakeOpenAI, reply: Reply, message: str) -> None:
    openai.add(reply)
    with pytest.raises(RemoteBackendError, match=r"OpenAI-compatible API at http://127\.0\.0\.1") as info:
        openai_parser(openai).parse("cups")
    assert message in str(info.value)
    assert info.value.raw_response == reply.payload().decode()


def test_timeout_is_not_retried(openai: FakeOpenAI) -> None:
    openai.add(Hang(1.0), ok(BOOK))
    with pytest.raises(RemoteBackendError, match=r"no answer within 0\.2 s"):
        openai_parser(openai, timeout=0.2).parse("cups")
    assert len(openai.requests) == 1


def test_refused_connection_is_retried_once() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    parser = LLMParser("openai", base_url=f"http://127.0.0.1:{port}/v1", retry_budget=0.05)
    with pytest.raises(RemoteBackendError, match=r"failed 2 attempts .* connection failed") as info:
        parser.parse("cups")
    assert info.value.status is None


def test_api_key_and_base_url_from_the_environment(
    openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ConfigError, match=r"needs an API key for https://api\.openai\.com/v1: .* OPENAI_API_KEY"
    ):
        LLMParser("openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert LLMParser("openai").base_url == "https://api.openai.com/v1"  # no request is made
    monkeypatch.setenv("PROMPTSEG_LLM_BASE_URL", openai.base_url + "/")
    openai.add(ok(BOOK))
    parser = LLMParser.from_spec("openai:llama3.1:8b")
    assert parser.base_url == openai.base_url
    parser.parse("the third book")
    assert openai.requests[0].api_key == "sk-env"
    assert openai.requests[0].json["model"] == "llama3.1:8b"


@pytest.mark.parametrize(
    ("spec", "model"),
    [
        ("openai", "gpt-4o-mini"),  # the provider's default model
        ("openai:gpt-4.1-nano", "gpt-4.1-nano"),
        ("openai:qwen2.5:7b-instruct", "qwen2.5:7b-instruct"),  # Ollama tags keep their colon
        ("rules", "parser spec must be PROVIDER or PROVIDER:MODEL"),  # the rule parser is not an LLM
        ("claude:opus", "PROVIDER one of gemini, openai"),
        ("openai:", "names no model"),
        ("", "got ''"),
    ],
)
def test_from_spec(spec: str, model: str, openai: FakeOpenAI) -> None:
    if spec.startswith("openai") and spec != "openai:":
        parser = LLMParser.from_spec(spec, base_url=openai.base_url)
        assert (parser.provider, parser.model, parser.spec) == ("openai", model, f"openai:{model}")
    else:
        with pytest.raises(ConfigError, match=model):
            LLMParser.from_spec(spec, base_url=openai.base_url)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"retry_budget": -1}, "retry_budget must be"),
        ({"base_url": "localhost:8000/v1"}, "must start with http"),
        ({"model": " "}, "model must be a model name"),
        ({"thinking_budget": -2}, "thinking_budget"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    settings = {"base_url": "http://127.0.0.1:9/v1", **options}
    with pytest.raises(ConfigError, match=message):
        LLMParser("openai", **settings)


def test_empty_prompt_sends_nothing(openai: FakeOpenAI) -> None:
    parser = openai_parser(openai)
    for prompt in ("", "   "):
        with pytest.raises(InputError, match="non-empty text prompt"):
            parser.parse(prompt)
    assert openai.requests == []


def gem(answer: Any) -> Reply:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return Reply(body=gemini_reply(text, prompt_tokens=2100, output_tokens=30))


def test_gemini_reply_becomes_the_query(gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("PROMPTSEG_GEMINI_BASE_URL", gemini.base_url)
    gemini.add(gem(f"```json\n{json.dumps(HELMET)}\n```"))
    with LLMParser.from_spec("gemini", timeout=2) as parser:
        query = parser.parse("people without a helmet")
        assert parser.last_usage == {
            "requests": 1,
            "prompt_tokens": 2100,
            "output_tokens": 30,
            "thinking_tokens": 0,
            "total_tokens": 2130,
        }
    assert query == Query(
        include=(Term("person", plural=True, relations=(Relation("wearing", Term("helmet"), True),)),),
        prompt="people without a helmet",
    )

    (request,) = gemini.requests
    assert request.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request.api_key == KEY
    body = request.json
    assert [p["text"] for p in body["systemInstruction"]["parts"]] == [system_instruction()]
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["temperature"] == 0
    assert next(iter(config["thinkingConfig"].values())) == 0  # thinking off
    assert [c["role"] for c in body["contents"]] == ["user"]
    assert request.texts == ['Prompt: "people without a helmet"']


def test_gemini_invalid_reply_is_retried_with_the_error(gemini: FakeGemini) -> None:
    previous = Query.from_dict({"include": [{"concept": "bottle"}]}, prompt="the bottle")
    bad = {"include": [{"concept": "bottle"}], "refer": "another"}
    gemini.add(gem(bad), gem({"include": [{"concept": "bottle"}], "refer": "other"}))
    query = gemini_parser(gemini).parse("the other bottle", previous=previous)
    assert query == Query(include=(Term("bottle"),), refer="other", prompt="the other bottle")

    first, second = gemini.requests
    assert first.texts == [f'Previous query: {json.dumps(previous.to_dict())}\nPrompt: "the other bottle"']
    assert [c["role"] for c in second.json["contents"]] == ["user", "model", "user"]
    assert second.texts[:2] == [first.texts[0], json.dumps(bad)]
    assert "refer: expected one of" in second.texts[2] and "'another'" in second.texts[2]


def test_gemini_invalid_twice_raises_with_the_raw_reply(gemini: FakeGemini) -> None:
    gemini.add(
        gem({"include": [{"concept": "cup", "size": "huge"}]}),
        gem({"include": [{"concept": "cup", "size": "big"}]}),
    )
    with pytest.raises(QueryError, match=r"gemini:gemini-2\.5-flash .* include\[0\]\.size") as info:
        gemini_parser(gemini).parse("the huge cup")
    assert info.value.raw_response == json.dumps({"include": [{"concept": "cup", "size": "big"}]})  # type: ignore[attr-defined]


def test_gemini_429_is_retried_after_retry_after(gemini: FakeGemini) -> None:
    gemini.add(api_error(429, "Resource has been exhausted", headers={"Retry-After": "0.1"}), gem(BOOK))
    start = time.monotonic()
    assert gemini_parser(gemini).parse("the third book").include[0].ordinal == Ordinal(3, "left")
    assert 0.1 <= time.monotonic() - start < 0.4  # the server's wait, not the 0.5 s default
    assert len(gemini.requests) == 2


def test_gemini_503_forever_and_403_fail(gemini: FakeGemini) -> None:
    gemini.add(api_error(503, "The model is overloaded"), api_error(503, "The model is overloaded"))
    with pytest.raises(
        RemoteBackendError, match=r"failed 2 attempts .* HTTP 503 UNAVAILABLE: The model is overloaded"
    ):
        gemini_parser(gemini, retry_budget=0.05).parse("cups")
    assert len(gemini.requests) == 2

    gemini.add(api_error(403, "API key not valid"), gem(BOOK))
    with pytest.raises(
        RemoteBackendError, match="HTTP 403 PERMISSION_DENIED: API key not valid; check the API key"
    ) as info:
        gemini_parser(gemini).parse("cups")
    assert info.value.status == 403
    assert len(gemini.requests) == 3  # not retried


def test_gemini_needs_a_key() -> None:
    pytest.importorskip(
        "google.genai", reason="the Gemini parser needs google-genai: pip install 'promptseg[gemini]'"
    )
    with pytest.raises(ConfigError, match=r"needs a Gemini API key: .*GEMINI_API_KEY or GOOGLE_API_KEY"):
        LLMParser("gemini")
