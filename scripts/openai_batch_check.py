#!/usr/bin/env python3
"""The official openai client, unchanged, against the gateway's Batch API.

Usage: openai_batch_check.py BASE_URL API_KEY MODEL

Uploads a JSONL file of two chat requests and one malformed line with
files.create, starts a batch with batches.create, polls batches.retrieve
until it is final, then reads the output and error files with
files.content: one output line per good request (matched by custom_id),
the malformed line reported with its line number. Prints "batch ok".
"""

import json
import sys
import time

from openai import OpenAI


def main() -> None:
    base_url, api_key, model = sys.argv[1:4]
    client = OpenAI(base_url=base_url, api_key=api_key)
    started = time.time()
    requests = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 4,
                "temperature": 0,
            },
        }
        for i, prompt in enumerate(["Say hi.", "Name a colour."])
    ]
    lines = [json.dumps(r) for r in requests] + ['{"custom_id": "broken']
    data = ("\n".join(lines) + "\n").encode()

    f = client.files.create(file=("batch.jsonl", data), purpose="batch")
    assert f.purpose == "batch" and f.bytes == len(data), f
    batch = client.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    assert batch.status == "in_progress", batch
    deadline = time.time() + 60
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        assert time.time() < deadline, f"batch not final in 60 s: {batch}"
        time.sleep(0.2)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (3, 2, 1), counts
    assert [(e.line, e.code) for e in batch.errors.data] == [(3, "invalid_json")], batch.errors

    out = [json.loads(l) for l in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == ["req-0", "req-1"], out
    for o in out:
        assert o["response"]["status_code"] == 200, o
        body = o["response"]["body"]
        assert body["object"] == "chat.completion", o
        assert body["usage"]["completion_tokens"] <= 4, o
        assert body["strata"]["receipt"], o
    errors = [json.loads(l) for l in client.files.content(batch.error_file_id).text.splitlines()]
    assert [e["error"]["line"] for e in errors] == [3], errors
    strata = (batch.model_extra or {}).get("strata", {})
    print(f"batch ok {batch.id} cost {strata.get('cost')} in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
