"""Unmodified hypha-rpc programs for `bench --scenario hypha`: the same two programs run
against the real hypha server and against `rhizomorph serve`.

  provider URL
      connect_to_server() (a workspace of its own), register a public "bench" service with echo(x), print {"ready": id},
      serve until stdin closes.

  caller URL PROVIDER_ID SCENARIO...
      connect_to_server() (10 connections for the spread scenarios, each in its own workspace),
      get_service("<PROVIDER_ID>:bench") (public, so found across workspaces), then for each
      scenario print {"start": name} and, when done, {"result": name, "messages", "bytes",
      "seconds", "p50_ms", "p95_ms", "p99_ms"}. Scenarios (the reference measurements'):
      small-seq / small-64 (2000 x 256 B), medium-seq / medium-64 (500 x 20 KiB),
      large-seq (20 x 2 MiB), mixed-seq (250 of 256 B / 20 KiB / 200 KiB in turn),
      spread-100 / spread-500 / spread-1000 (100, 500 or 1000 calls at once, spread over 10
      clients).
"""

import asyncio
import json
import sys
import time


def out(obj):
    print(json.dumps(obj), flush=True)


async def provider(url):
    from hypha_rpc import connect_to_server

    server = await connect_to_server({"server_url": url, "client_id": "bench-provider"})

    def echo(x):
        return x

    await server.register_service(
        {"id": "bench", "config": {"visibility": "public"}, "echo": echo}
    )
    out({"ready": f"{server.config.workspace}/bench-provider"})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.disconnect()


def quantile(sorted_ms, q):
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def timed(call, payload, lat):
    t = time.perf_counter()
    r = await call(payload)
    lat.append((time.perf_counter() - t) * 1000)
    assert len(r) == len(payload)


async def run(name, echos, payloads, in_flight):
    lat = []
    start = time.perf_counter()
    if in_flight == 1:
        for p in payloads:
            await timed(echos[0], p, lat)
    else:
        sem = asyncio.Semaphore(in_flight)

        async def one(i, p):
            async with sem:
                await timed(echos[i % len(echos)], p, lat)

        await asyncio.gather(*(one(i, p) for i, p in enumerate(payloads)))
    seconds = time.perf_counter() - start
    lat.sort()
    out(
        {
            "result": name,
            "messages": len(payloads),
            "bytes": sum(len(p) for p in payloads),
            "seconds": seconds,
            "p50_ms": quantile(lat, 0.50),
            "p95_ms": quantile(lat, 0.95),
            "p99_ms": quantile(lat, 0.99),
        }
    )


async def caller(url, provider_id, *scenarios):
    from hypha_rpc import connect_to_server

    servers = []
    for i in range(10 if any(s.startswith("spread") for s in scenarios) else 1):
        servers.append(
            await connect_to_server({"server_url": url, "client_id": f"bench-caller-{i}"})
        )
    echos = []
    for s in servers:
        svc = await s.get_service(f"{provider_id}:bench")
        echos.append(svc.echo)
    await echos[0](b"warm")
    kb = 1024
    plan = {
        "small-seq": ([b"x" * 256] * 2000, 1),
        "small-64": ([b"x" * 256] * 2000, 64),
        "medium-seq": ([b"m" * (20 * kb)] * 500, 1),
        "medium-64": ([b"m" * (20 * kb)] * 500, 64),
        "large-seq": ([b"L" * (2048 * kb)] * 20, 1),
        "mixed-seq": ([[b"s" * 256, b"m" * (20 * kb), b"b" * (200 * kb)][i % 3] for i in range(250)], 1),
        "spread-100": ([b"x" * 256] * 2000, 100),
        "spread-500": ([b"x" * 256] * 2000, 500),
        "spread-1000": ([b"x" * 256] * 3000, 1000),
    }
    for name in scenarios:
        payloads, in_flight = plan[name]
        chosen = echos if name.startswith("spread") else echos[:1]
        out({"start": name})
        await run(name, chosen, payloads, in_flight)
    for s in servers:
        await s.disconnect()


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    asyncio.run({"provider": provider, "caller": caller}[role](*args))
