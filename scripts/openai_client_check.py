"""The official `openai` Python client against a Strata gateway, unchanged:
one chat completion and one streamed chat completion.

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
