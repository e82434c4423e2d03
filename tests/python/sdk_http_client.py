"""Drives the daemon's MCP Streamable HTTP endpoint with the official MCP
Python SDK (PyPI `mcp`, 2.x), as a remote client would, in both eras:

- 2025-11-25: initialize handshake (a session), tools/list, tools/call;
- 2026-07-28: server/discover, then stateless tools/list and tools/call.

Usage: sdk_http_client.py <mcp url> <bearer token> <mode: initialize|discover>
Prints one JSON line with what it saw; exits non-zero on any failure.
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, token: str, mode: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                if mode == "initialize":
                    await session.initialize()
                else:
                    await session.discover()
                tools = await session.list_tools()
                result = await session.call_tool(
                    "get_bot_response", {"bot_name": "echo", "message": f"hello via {mode}"}
                )
                print(
                    json.dumps(
                        {
                            "protocol": str(session.protocol_version),
                            "tools": [t.name for t in tools.tools],
                            "text": result.content[0].text,
                            "is_error": bool(result.is_error),
                        }
                    )
                )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
