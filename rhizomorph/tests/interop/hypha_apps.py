"""Unmodified hypha-rpc programs for tests/hypha_manager.rs: what a user writes against a hypha
server, pointed at `rhizomorph serve` (its workspace manager, legacy.md §L6).

Each role prints one JSON object per line on stdout; the Rust test reads them and writes
commands on stdin.

  provider URL WORKSPACE
      connect_to_server(), register a public "calc" service (echo, a kwargs function, one
      returning a numpy array, a generator), print {"ready": "<ws>/<client_id>"}. Every time
      hypha-rpc reconnects by itself and re-registers its services, print
      {"reregistered": "<ws>/<client_id>"}. "quit" on stdin ends it.

  caller URL WORKSPACE SERVICE
      connect_to_server(), get_service(SERVICE) and call each function, list_services and
      list_clients, print {"calls": {...}}; then wait for the provider's client_disconnected
      event, print {"client_disconnected": data}; then get_service again until it is found
      (the provider came back), print {"found_again": result}.

  call-native URL WORKSPACE SERVICE
      get_service(SERVICE) of a native rhizomorph provider, call its echo and add, print
      {"native": {...}}.
"""

import asyncio
import json
import sys

import numpy as np


def out(obj):
    print(json.dumps(obj, default=str), flush=True)


async def lines():
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not line:
            return
        yield line


async def provider(url, workspace):
    from hypha_rpc import connect_to_server

    server = await connect_to_server(
        {"server_url": url, "client_id": "py-provider", "workspace": workspace}
    )

    def echo(x):
        return x

    def scale(values, factor=2, offset=0):
        return [v * factor + offset for v in values]

    def arange(n):
        return np.arange(n, dtype="float32")

    async def count(n):
        for i in range(n):
            yield i

    await server.register_service(
        {
            "id": "calc",
            "config": {"visibility": "public"},
            "echo": echo,
            "scale": scale,
            "arange": arange,
            "count": count,
        }
    )
    me = f"{server.config.workspace}/py-provider"
    server.rpc.on("services_registered", lambda info: out({"reregistered": me, "info": info}))
    out({"ready": me})
    async for line in lines():
        if line == "quit":
            break
    await server.disconnect()


async def caller(url, workspace, service_id):
    from hypha_rpc import connect_to_server

    server = await connect_to_server(
        {"server_url": url, "client_id": "py-caller", "workspace": workspace}
    )
    gone = asyncio.get_running_loop().create_future()

    def on_disconnected(event):
        if not gone.done():
            gone.set_result(event.get("data", event))

    server.on("client_disconnected", on_disconnected)
    svc = await server.get_service(service_id)
    calls = {
        "echo": await svc.echo({"nested": [1, 2.5, "x"], "bytes": b"\x00\x01"}),
        "scale": await svc.scale([1, 2, 3], factor=10, offset=1),
        "arange_sum": float(np.asarray(await svc.arange(5)).sum()),
        "count": [i async for i in await svc.count(4)],
        "services": sorted(s["id"] for s in await server.list_services({"workspace": workspace})),
        "clients": sorted(c["id"] for c in await server.list_clients()),
        "echo_manager": await server.echo("manager echo"),
    }
    out({"calls": calls})
    out({"client_disconnected": await asyncio.wait_for(gone, 60)})
    for _ in range(100):
        try:
            svc = await server.get_service(service_id)
            out({"found_again": await svc.echo("again")})
            break
        except Exception as e:  # noqa: BLE001 - a missing service while it re-registers
            last = str(e)
            await asyncio.sleep(0.2)
    else:
        out({"not_found_again": last})
    await server.disconnect()


async def call_native(url, workspace, service_id):
    from hypha_rpc import connect_to_server

    server = await connect_to_server(
        {"server_url": url, "client_id": "py-native-caller", "workspace": workspace}
    )
    svc = await server.get_service(service_id)
    result = {"echo": await svc.echo([1, "two", {"three": 3.0}]), "add": await svc.add(2, 3, 4)}
    try:
        await svc.missing()
    except Exception as e:  # noqa: BLE001 - the provider's reject, as a RemoteException
        result["missing"] = str(e)[:200]
    out({"native": result})
    await server.disconnect()


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    roles = {"provider": provider, "caller": caller, "call-native": call_native}
    asyncio.run(roles[role](*args))
