"""The official `openai` Python client against a Strata gateway, unchanged:
one chat completion and one streamed chat completion, then logprobs on chat
(plain and streamed) and on completions.

Usage: openai_client_check.py BASE_URL API_KEY MODEL
"""
import sys

from openai import OpenAI

base_url, api_key, model = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key=api_key)

chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=16,
    temperature=0,
)
text = chat.choices[0].message.content
assert text, "empty completion"
assert chat.usage.completion_tokens > 0, chat.usage
print(f"chat ok: {text!r} ({chat.usage.completion_tokens} tokens)")

pieces = []
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Count to five."}],
    max_tokens=16,
    temperature=0,
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
assert len(pieces) > 1, f"expected several streamed pieces, got {pieces}"
print(f"stream ok: {''.join(pieces)!r} in {len(pieces)} pieces")

# Log-probabilities, read by the client's own types. Greedy: every value is
# a log-probability (<= 0) and the sampled token is at least as likely as
# every alternative listed.
chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Name three colours."}],
    max_tokens=8,
    temperature=0,
    logprobs=True,
    top_logprobs=3,
)
content = chat.choices[0].logprobs.content
assert content and len(content) == chat.usage.completion_tokens, (content, chat.usage)
for entry in content:
    # The token is its piece's bytes as text (a split character shows U+FFFD).
    assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token, entry
    assert entry.logprob <= 0, entry
    assert 1 <= len(entry.top_logprobs) <= 3, entry
    for alt in entry.top_logprobs:
        assert alt.logprob <= 0 and isinstance(alt.token, str), alt
        assert entry.logprob >= alt.logprob, (entry, alt)
    assert entry.top_logprobs[0].token == entry.token, entry
print(f"chat logprobs ok: {[(e.token, round(e.logprob, 3)) for e in content]}")

streamed = []
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Name three colours."}],
    max_tokens=8,
    temperature=0,
    logprobs=True,
    top_logprobs=3,
    stream=True,
):
    if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
        streamed.extend(chunk.choices[0].logprobs.content)
# Another task, perhaps on another node: the same tokens, the same numbers
# up to float noise.
assert [e.token for e in streamed] == [e.token for e in content], (streamed, content)
assert all(abs(a.logprob - b.logprob) < 1e-4 for a, b in zip(streamed, content)), (streamed, content)
print(f"streamed chat logprobs ok: {len(streamed)} tokens, as not streamed")

completion = client.completions.create(
    model=model,
    prompt="The capital of France is",
    max_tokens=8,
    temperature=0,
    logprobs=2,
)
lp = completion.choices[0].logprobs
n = completion.usage.completion_tokens
assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n, lp
assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0, lp.text_offset
for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
    assert value <= 0 and 1 <= len(top) <= 2, (token, value, top)
    assert all(v <= 0 and value >= v for v in top.values()), (token, value, top)
    assert top.get(token) == value, (token, value, top)
print(f"completion logprobs ok: {list(zip(lp.tokens, lp.token_logprobs))}")
