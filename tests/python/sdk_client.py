"""Drives poe-code with the official MCP Python SDK (PyPI `mcp`, 2.x), as an
external client would, over both lifecycles:

- 2025-11-25: initialize handshake, tools/list, tools/call;
- 2026-07-28: server/discover, then stateless tools/list and tools/call.

Usage: sdk_client.py <path to poe-code> <mode: initialize|discover>
Prints one JSON line with what it saw; exits non-zero on any failure.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(binary: str, mode: str) -> None:
    params = StdioServerParameters(command=binary, args=["mcp", "run"], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
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
    asyncio.run(main(sys.argv[1], sys.argv[2]))
