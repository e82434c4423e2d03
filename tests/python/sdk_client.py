"""Drives poe-code with the official MCP Python SDK (PyPI `mcp`, 2.x), as an
external client would, over both lifecycles:

- 2025-11-25: initialize handshake, tools/list, tools/call;
- 2026-07-28: server/discover, then stateless tools/list and tools/call.

Usage:
  sdk_client.py stdio <path to poe-code> <mode: initialize|discover>
  sdk_client.py http <mcp url> <bearer token> <mode: initialize|discover>
Prints one JSON line with what it saw; exits non-zero on any failure.
"""

import asyncio
import contextlib
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters


def transport(argv: list[str]):
    """The SDK's client transport for the command line, and the mode."""
    if argv[0] == "stdio":
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(command=argv[1], args=["mcp", "run"], env=dict(os.environ))
        return stdio_client(params), argv[2]

    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    @contextlib.asynccontextmanager
    async def http(url: str, token: str):
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as client:
            async with streamable_http_client(url, http_client=client) as streams:
                yield streams

    return http(argv[1], argv[2]), argv[3]


async def main(argv: list[str]) -> None:
    connect, mode = transport(argv)
    async with connect as (read, write):
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
    asyncio.run(main(sys.argv[1:]))
