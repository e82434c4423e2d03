"""Uses the official `openai` Python package against the daemon's
OpenAI-compatible API, as any script that takes a base URL would.

Usage: openai_client.py <base url ending in /v1> <bearer token> <calls>
Runs <calls> completions at once (every other one streamed), then one
malformed request, and prints one JSON line: the answers in call order,
the usage the streams reported, and the error the malformed one got.
"""

import asyncio
import json
import sys

import openai


async def one(client: openai.AsyncOpenAI, i: int) -> dict:
    message = f"openai {i}"
    if i % 2 == 0:
        stream = await client.chat.completions.create(
            model="test-bot",
            messages=[{"role": "user", "content": message}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                usage = chunk.usage.total_tokens
        return {"text": text, "streamed": True, "usage": usage}
    answer = await client.chat.completions.create(
        model="test-bot", messages=[{"role": "user", "content": message}]
    )
    return {
        "text": answer.choices[0].message.content,
        "streamed": False,
        "usage": answer.usage.total_tokens if answer.usage else None,
    }


async def main(base_url: str, token: str, calls: int) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=120)
    answers = await asyncio.gather(*(one(client, i) for i in range(calls)))
    bad = None
    try:
        await client.chat.completions.create(model="test-bot", messages=[], n=2)
    except openai.BadRequestError as e:
        bad = {"status": e.status_code, "message": e.message}
    models = [m.id for m in (await client.models.list()).data]
    print(json.dumps({"answers": answers, "bad_request": bad, "models": models}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
