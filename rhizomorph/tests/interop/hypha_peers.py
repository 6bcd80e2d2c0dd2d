"""Real hypha-rpc peers for rhizomorph's interop tests (tests/legacy_interop.rs).

Runs unmodified hypha-rpc code from PyPI. Two roles:

  provider URL
      connect_to_server() to a real hypha server, register a public "echo-svc" service, print
      {"id": "<workspace>/<client_id>"}; then, for each line read on stdin (a rhizomorph
      client's id), fetch that client's "echo-rs" service with hypha-rpc's own
      get_remote_service() and call it, printing {"reverse": result}. "quit" ends.

  two-connections URL
      Two WebsocketRPCConnection objects (hypha-rpc's own connection class) connect to
      `rhizomorph serve`, exchange messages routed by `to`, check the header rewrite hypha does
      (from/ws/user, `to` normalised), the payload bytes, a broadcast, a reject for an absent
      peer, and stay connected across keepalive pings. Prints {"ok": true, ...} or exits 1.
"""

import asyncio
import io
import json
import sys

import msgpack
import numpy as np


def out(obj):
    print(json.dumps(obj), flush=True)


async def provider(url):
    from hypha_rpc import connect_to_server

    server = await connect_to_server({"server_url": url, "client_id": "py-provider"})

    def echo(x):
        return x

    def echo_kwargs(**kwargs):
        return kwargs

    def describe(arr):
        return {"shape": list(arr.shape), "dtype": str(arr.dtype), "sum": float(arr.sum())}

    await server.register_service(
        {
            "id": "echo-svc",
            "config": {"visibility": "public"},
            "echo": echo,
            "echo_kwargs": echo_kwargs,
            "describe": describe,
        }
    )
    out({"id": f"{server.config.workspace}/py-provider"})
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not line or line == "quit":
            break
        svc = await server.rpc.get_remote_service(f"{line}:echo-rs", timeout=20)
        result = await svc.echo("from python")
        array = await svc.echo(np.arange(6, dtype="float32").reshape(2, 3))
        out({"reverse": result, "array_sum": float(np.asarray(array).sum())})
    await server.disconnect()


def split(message):
    unpacker = msgpack.Unpacker(io.BytesIO(message))
    main = unpacker.unpack()
    pos = unpacker.tell()
    return main, message[pos:]


async def two_connections(url):
    from hypha_rpc.websocket_client import WebsocketRPCConnection

    queues = {}
    conns = {}
    for name in ["alice", "bob"]:
        queue = asyncio.Queue()
        # ping_interval=1: the application pings ({"type": "ping"}) start 2 s after connecting,
        # and the websockets library sends protocol pings every second.
        conn = WebsocketRPCConnection(url, name, workspace="demo", ping_interval=1, ping_timeout=5)
        conn.on_message(queue.put_nowait)
        info = await conn.open()
        assert info["workspace"] == "demo", info
        assert info["client_id"] == name, info
        assert info["manager_id"], info
        queues[name], conns[name] = queue, conn

    async def recv(name):
        return await asyncio.wait_for(queues[name].get(), 10)

    # 1. alice -> bob by bare id, with forged identity fields.
    extra = msgpack.packb({"args": [b"\x07" * 300, {"nested": [1, 2.5, "x"]}], "with_kwargs": False})
    main = {"type": "method", "from": "evil/mallory", "to": "bob", "method": "services.x.y", "user": "forged"}
    await conns["alice"].emit_message(msgpack.packb(main) + extra)
    got_main, got_extra = split(await recv("bob"))
    assert got_main["from"] == "demo/alice", got_main
    assert got_main["to"] == "demo/bob", got_main
    assert got_main["ws"] == "demo", got_main
    assert got_main["user"]["roles"] == ["anonymous"], got_main
    assert got_main["method"] == "services.x.y", got_main
    assert list(got_main)[:5] == ["type", "from", "to", "method", "user"], list(got_main)
    assert got_extra == extra, "payload bytes changed"

    # 2. bob -> alice by full id, no extra segment.
    await conns["bob"].emit_message(msgpack.packb({"type": "event", "to": "demo/alice"}))
    got_main, got_extra = split(await recv("alice"))
    assert got_main["from"] == "demo/bob" and got_extra == b"", got_main

    # 3. A broadcast reaches everyone in the workspace but the sender.
    await conns["bob"].emit_message(msgpack.packb({"type": "hello", "to": "*"}))
    got_main, _ = split(await recv("alice"))
    assert got_main["to"] == "demo/*" and got_main["type"] == "hello", got_main

    # 4. A call to a peer that is not connected is rejected, as hypha does.
    await conns["alice"].emit_message(
        msgpack.packb({"type": "method", "to": "nobody", "method": "services.a.b", "session": "s1"})
        + msgpack.packb({"args": []})
    )
    got_main, got_extra = split(await recv("alice"))
    assert got_main["method"] == "s1.reject", got_main
    assert "not connected" in msgpack.unpackb(got_extra)["args"][0]["_rvalue"]

    # 5. Keepalive: both stay up across pings (first app ping at 2 s), then still route.
    await asyncio.sleep(3.5)
    big = msgpack.packb({"args": [b"\x01" * 200_000]})
    await conns["bob"].emit_message(msgpack.packb({"type": "method", "to": "alice"}) + big)
    got_main, got_extra = split(await recv("alice"))
    assert got_extra == big

    for conn in conns.values():
        await conn.disconnect()
    out({"ok": True})


async def main():
    role, url = sys.argv[1], sys.argv[2]
    if role == "provider":
        await provider(url)
    elif role == "two-connections":
        await two_connections(url)
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    asyncio.run(main())
