#!/usr/bin/env python3
"""Writes sessions.json: session-level vectors of wire.md Appendix A (scripted exchanges).

Each vector is a whole exchange between a client and a server: the bytes each side puts on the
wire, in order, the application calls that cause them, and the events each side's application
must see. Like make_vectors.py it is written from spec/wire.md alone (standard library only):
frames are encoded by make_vectors.encode, header blocks by make_header_vectors.RefEncoder, and
the flow-control arithmetic (windows, chunk sizes, when credit is urgent, §9) is worked out here
from the spec's rules, not taken from rhizomorph. rhizomorph-proto/tests/session_vectors.rs
replays every vector against the sans-IO session, once as the client and once as the server.
Run: `python3 spec/vectors/make_session_vectors.py`.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vectors import CHANNELS, encode, varint  # noqa: E402
from make_header_vectors import RefEncoder  # noqa: E402

V1_0 = 0x0100
DEFAULTS = {1: 65536, 2: 67108864, 3: 1048576, 4: 4194304, 5: 4096, 6: 16384, 7: 256, 8: 3,
            9: 1048576, 10: 0}
SETTING = {"MAX_FRAME_PAYLOAD": 1, "MAX_MESSAGE_SIZE": 2, "INITIAL_CHANNEL_WINDOW": 3,
           "INITIAL_CONNECTION_WINDOW": 4, "HEADER_TABLE_SIZE": 5, "MAX_HEADER_LIST_SIZE": 6}


def payload_length(frame_bytes):
    """§4.1: the Length field of an encoded frame (after Type and Flags)."""
    first = frame_bytes[2]
    n = 1 << (first >> 6)
    value = first & 0x3F
    for b in frame_bytes[3:2 + n]:
        value = value << 8 | b
    return value


def data(n, seed=0):
    """n payload bytes with a recognisable pattern."""
    return bytes((seed + i * 7) % 251 for i in range(n))


class Side:
    """One peer's view: its settings and, per channel, the header encoder it uses toward the
    other side (whose HEADER_TABLE_SIZE sizes the table, §6.3.1)."""

    def __init__(self, name, settings, token=b"", agent=""):
        self.name = name
        self.settings = dict(DEFAULTS)
        self.settings.update({SETTING[k]: v for k, v in settings.items()})
        self.given = [[SETTING[k], v] for k, v in settings.items()]
        self.token = token
        self.agent = agent
        self.encoders = None
        self.sequence = [0, 0, 0, 0]  # §5.3.8, messages started per channel
        self.ids = [0, 0, 0, 0]       # the application's send ids, in enqueue order


class Script:
    def __init__(self, name, sections, description, client, server, roles=("client", "server"),
                 transport="websocket", config=None):
        self.v = {"name": name, "sections": sections, "description": description,
                  "transport": transport, "roles": list(roles),
                  "client": self.side_json(client), "server": self.side_json(server),
                  "steps": []}
        if config:
            self.v["config"] = config
        self.client, self.server = client, server
        client.peer, server.peer = server, client
        for s in (client, server):
            s.encoders = [RefEncoder(s.peer.settings[5]) for _ in range(4)]
        self.opened = {"client": set(), "server": set()}

    @staticmethod
    def side_json(s):
        return {"settings": s.given, "token": s.token.hex(), "agent": s.agent}

    # ------------------------------------------------------------------ frames

    def hello(self, side, versions=(V1_0,)):
        return {"type": "HELLO", "versions": list(versions), "settings": side.given,
                "token": side.token.hex(), "agent": side.agent}

    def message(self, side, channel, payload, fields, first=True, last=True, length=None,
                encoding="raw", schema_id=None):
        """A MESSAGE frame; the header block comes from side's encoder for the channel."""
        f = {"type": "MESSAGE", "channel": channel, "first": first, "last": last}
        if first:
            f["message_length"] = len(payload) if length is None else length
            f["encoding"] = encoding
            if schema_id is not None:
                f["schema_id"] = schema_id
            f["compression"] = "none"
            f["fields"] = [list(x) for x in fields]
        f["chunk_data"] = payload.hex()
        return f

    def wire(self, side, f):
        """Bytes of a frame; a MESSAGE's fields become a header block (§6.4)."""
        if f["type"] == "MESSAGE" and f["first"]:
            g = dict(f)
            block, _ = side.encoders[CHANNELS[f["channel"]]].encode([tuple(x) for x in f["fields"]])
            g["header_block"] = block.hex()
            del g["fields"]
            return encode(g)
        return encode(f)

    @staticmethod
    def first_metadata(f, block_len):
        """§5.3: bytes of a first frame's payload before its Chunk Data."""
        n = 1 + len(varint(f["message_length"])) + 1
        if f.get("schema_id") is not None:
            n += len(varint(f["schema_id"]))
        return n + 1 + len(varint(block_len)) + block_len

    # ------------------------------------------------------------------ steps

    def sends(self, side, frames, stream=None):
        """side writes frames: one WebSocket message (§16.2.1), or bytes on a QUIC stream."""
        raw = b""
        lengths = []  # each frame's Frame Payload length L (§4.1), what credit it costs
        for f in frames:
            b = self.wire(side, f)
            lengths.append(payload_length(b))
            raw += b
        step = {"from": side.name, "frames": frames}
        if stream is not None:
            step["stream"] = stream
            if stream not in self.opened[side.name]:  # §17.2.1: the stream's channel id first
                self.opened[side.name].add(stream)
                raw = varint(CHANNELS[stream]) + raw
                step["opens"] = True
        step["hex"] = raw.hex()
        self.v["steps"].append(step)
        return lengths

    def app(self, side, action, **args):
        self.v["steps"].append({"side": side.name, "app": dict(action=action, **args)})

    def send(self, side, channel, fields, payload):
        """The application queues a message; returns its id (enqueue order per channel)."""
        i = CHANNELS[channel]
        sid = side.ids[i]
        side.ids[i] += 1
        self.app(side, "send", channel=channel, fields=[list(x) for x in fields],
                 payload=payload.hex(), id=sid)
        return sid

    def events(self, side, events):
        self.v["steps"].append({"side": side.name, "events": events})

    def chunks(self, side, channel, fields, payload, window, max_frame=None):
        """Splits a message as a sender that fills each frame to what its window (bytes of
        credit left, channel and connection together) and MAX_FRAME_PAYLOAD allow (§8.1, §9.2.1,
        §9.5.1): returns the frames sent before the credit ran out, the rest, and the credit
        left. The header block is sized by a dry run of the encoder (it is encoded again, for
        real, when the frame is written)."""
        max_frame = max_frame or side.peer.settings[1]
        meta = self.metadata(side, channel, fields, payload)
        limit = min(window, max_frame)
        n = max(0, min(len(payload), limit - meta))
        out = [self.message(side, channel, payload[:n], fields, last=n == len(payload),
                            length=len(payload))]
        window -= meta + n
        more, rest, window = self.chunks_after(side, channel, payload[n:], window, max_frame)
        return out + more, rest, window

    def metadata(self, side, channel, fields, payload, after=()):
        """§5.3: the bytes before Chunk Data in the first frame side would write for this
        message on channel once the headers `after` were encoded there, its header block sized
        by a dry run of the channel's encoder."""
        enc = side.encoders[CHANNELS[channel]]
        probe = RefEncoder(enc.table.capacity)
        probe.table.entries = list(enc.table.entries)
        for earlier in after:
            probe.encode([tuple(x) for x in earlier])
        block, _ = probe.encode([tuple(x) for x in fields])
        return self.first_metadata({"message_length": len(payload)}, len(block))

    def chunks_after(self, side, channel, rest, window, max_frame=None):
        """Continuation frames of a message whose remaining bytes are `rest`, with `window`
        bytes of credit (as `chunks`)."""
        max_frame = max_frame or side.peer.settings[1]
        out, pos = [], 0
        while pos < len(rest):
            limit = min(window, max_frame)
            if limit < 2:  # no credit for a frame with one byte of data (§9.5.1)
                break
            n = min(len(rest) - pos, limit - 1)
            out.append(self.message(side, channel, rest[pos:pos + n], None, first=False,
                                    last=pos + n == len(rest)))
            window -= 1 + n
            pos += n
        return out, rest[pos:], window

    def connect(self, accept_token=b""):
        """§3.2: the HELLO exchange, the server accepting."""
        c, s = self.client, self.server
        quic = self.v["transport"] == "quic"
        self.sends(c, [self.hello(c)], stream="control" if quic else None)
        self.events(s, [{"event": "hello_received", "token": c.token.hex(), "agent": c.agent}])
        self.app(s, "accept", token=accept_token.hex())
        self.events(s, [{"event": "connected", "version": V1_0}])
        self.sends(s, [self.hello(s)], stream="control" if quic else None)
        self.events(c, [{"event": "connected", "version": V1_0}])

    def msg_event(self, channel, sequence, fields, payload, **extra):
        e = {"event": "message", "channel": channel, "sequence": sequence,
             "fields": [list(x) for x in fields], "payload": payload.hex()}
        e.update(extra)
        return e


# ---------------------------------------------------------------------- the exchanges

TOKEN = b"ws-a/alice"
CALC = [("to", "calc"), ("method", "add"), ("session", "1")]
REPLY = [("type", "reply"), ("session", "1"), ("status", "ok")]


def client(**settings):
    return Side("client", settings, TOKEN, "py-client/1")


def server(**settings):
    return Side("server", settings, b"", "py-server/1")


def handshake_and_call():
    c, s = client(), server(MAX_FRAME_PAYLOAD=16384)
    x = Script("handshake-and-call", ["§3.2.1", "§3.2.2", "§3.2.6", "§5.3", "§6.4.4", "§20.1"],
               "HELLO both ways (the server waits for its application to accept), then a call "
               "and its reply on rpc.", c, s)
    x.connect()
    x.send(c, "rpc", CALC, b"\x01\x02")
    x.sends(c, [x.message(c, "rpc", b"\x01\x02", CALC)])
    x.events(s, [x.msg_event("rpc", 0, CALC, b"\x01\x02")])
    x.app(s, "release", channel="rpc")  # 14 bytes: no CREDIT of its own (§9.5.2)
    x.send(s, "rpc", REPLY, b"\x03")
    x.sends(s, [x.message(s, "rpc", b"\x03", REPLY)])
    x.events(c, [x.msg_event("rpc", 0, REPLY, b"\x03")])
    return x.v


def version_mismatch():
    c, s = client(), server()
    x = Script("version-mismatch-server", ["§3.2.4"],
               "A client that offers only 0x0200: the server answers CLOSE VERSION_MISMATCH "
               "instead of HELLO.", c, s, roles=["server"])
    x.sends(c, [x.hello(c, versions=[0x0200])])
    x.sends(s, [{"type": "CLOSE", "error_code": "VERSION_MISMATCH", "reason": "",
                 "kind": "VersionMismatch"}])
    x.events(s, [{"event": "closed", "code": "VERSION_MISMATCH", "initiator": "local"}])
    return x.v


def version_not_offered():
    c, s = client(), server()
    x = Script("version-not-offered-client", ["§3.2.3"],
               "A server HELLO naming a version the client did not offer: the client closes "
               "with VERSION_MISMATCH.", c, s, roles=["client"])
    x.sends(c, [x.hello(c)])
    x.sends(s, [x.hello(s, versions=[0x0102])])
    x.sends(c, [{"type": "CLOSE", "error_code": "VERSION_MISMATCH", "reason": "",
                 "kind": "VersionMismatch"}])
    x.events(c, [{"event": "closed", "code": "VERSION_MISMATCH", "initiator": "local"}])
    return x.v


def auth_refused():
    c, s = client(), server()
    x = Script("auth-refused", ["§3.2.7", "§14.2.1"],
               "The server's application refuses the token: CLOSE AUTH_FAILED instead of "
               "HELLO; the client sends nothing after it.", c, s)
    x.sends(c, [x.hello(c)])
    x.events(s, [{"event": "hello_received", "token": c.token.hex(), "agent": c.agent}])
    x.app(s, "reject", code="AUTH_FAILED", reason="unknown token")
    x.sends(s, [{"type": "CLOSE", "error_code": "AUTH_FAILED", "reason": "unknown token"}])
    x.events(s, [{"event": "closed", "code": "AUTH_FAILED", "initiator": "local"}])
    x.events(c, [{"event": "closed", "code": "AUTH_FAILED", "initiator": "peer"}])
    return x.v


def credit_stall():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=1024)
    x = Script("credit-stall-and-release", ["§9.2.1", "§9.2.2", "§9.3", "§9.3.1", "§9.5",
                                            "§9.5.1", "§8.3"],
               "A 1,500-byte rpc message against a 1,024-byte channel window: the sender fills "
               "the window and waits; the chunk is released on arrival (appended to reassembly), "
               "so the receiver's credit is urgent; the rest follows; the receiver's "
               "application releases the message and its credit goes back.", c, s)
    x.connect()
    body = data(1500, 1)
    fields = [("to", "calc")]
    x.send(c, "rpc", fields, body)
    sent, rest, _ = x.chunks(c, "rpc", fields, body, 1024)
    first_len = x.sends(c, sent)[0]
    # §9.5: the channel window is now 0 (< a quarter): urgent. The connection's pending 1,024
    # bytes are neither urgent nor 16 KiB (§9.5.2): they wait.
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": first_len}])
    tail = [x.message(c, "rpc", rest, fields, first=False, last=True)]
    x.sends(c, tail)
    x.events(s, [x.msg_event("rpc", 0, fields, body)])
    x.app(s, "release", channel="rpc")
    # The last chunk (1 + 488 bytes) was held by the application; released, the window of
    # 535 is under the progress threshold (16,384 + 1,088): urgent.
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": 1 + len(rest)}])
    return x.v


def tail_under_a_kilobyte():
    c, s = client(), server(MAX_FRAME_PAYLOAD=1100, INITIAL_CHANNEL_WINDOW=2048)
    x = Script("tail-under-a-kilobyte", ["§9.5.1", "§8.1"],
               "A message's last 412 bytes need a frame of 413, not of 1,025: with 948 bytes "
               "of the window left after a first frame cut to the peer's MAX_FRAME_PAYLOAD "
               "(1,100), the sender sends the tail at once, in the same write (the windows "
               "could hold 1,025, so waiting for a frame with 1,024 bytes of data would be "
               "allowed only if that many were left to send).", c, s)
    x.connect()
    body = data(1500, 21)
    fields = [("to", "calc")]
    x.send(c, "rpc", fields, body)
    sent, rest, _ = x.chunks(c, "rpc", fields, body, 2048)
    assert not rest and len(sent) == 2 and len(sent[1]["chunk_data"]) // 2 < 1024
    first_len = x.sends(c, sent)[0]
    assert first_len == 1100
    x.events(s, [x.msg_event("rpc", 0, fields, body)])
    # §9.3: the first chunk was released when it was appended to reassembly; the rpc window
    # (536 outstanding) is under the progress threshold: urgent. The message itself, delivered
    # and not taken, holds the rest.
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": first_len}])
    return x.v


def stalled_channel_passed_over():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=1024)
    x = Script("stalled-channel-passed-over", ["§7.4", "§9.2.2", "§9.5.1"],
               "A channel that lacks the credit for its next frame is passed over, not waited "
               "for: the rpc window holds exactly the second rpc message's metadata (one byte "
               "short of a frame with one byte of data, §9.5.1: the window of 1,024 cannot "
               "hold a frame with 1,024 bytes), so the stream message queued after it goes out "
               "in the same write; the second rpc message follows the credit its channel gets "
               "back.", c, s)
    x.connect()
    calc = [("to", "calc")]
    b = data(1500, 23)
    # The first message leaves exactly the second's metadata in the rpc window.
    meta_b = x.metadata(c, "rpc", calc, b, after=[calc])
    meta_a = x.metadata(c, "rpc", calc, data(1000))
    a = data(1024 - meta_a - meta_b, 22)
    assert x.metadata(c, "rpc", calc, a) == meta_a
    x.send(c, "rpc", calc, a)
    x.send(c, "rpc", calc, b)
    x.send(c, "stream", calc, b"status?")
    la = x.sends(c, [x.message(c, "rpc", a, calc), x.message(c, "stream", b"status?", calc)])[0]
    assert 1024 - la == meta_b, (la, meta_b)
    x.events(s, [x.msg_event("rpc", 0, calc, a), x.msg_event("stream", 0, calc, b"status?")])
    x.app(s, "release", channel="rpc")
    # §9.5: the rpc window's outstanding 1,024 - la is under the progress threshold: urgent.
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": la}])
    sent, rest, _ = x.chunks(c, "rpc", calc, b, 1024)
    lb = x.sends(c, sent)[0]
    assert rest
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": lb}])
    tail, rest, _ = x.chunks_after(c, "rpc", rest, 1024)
    assert not rest
    x.sends(c, tail)
    x.events(s, [x.msg_event("rpc", 1, calc, b)])
    return x.v


def rpc_through_bulk():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=1024)
    x = Script("rpc-through-bulk", ["§7.2", "§7.4", "§8.4", "§9.1"],
               "A 3,000-byte bulk message waits for credit between its chunks; an rpc message "
               "queued meanwhile goes out at once on its own channel's credit and is delivered "
               "first.", c, s)
    x.connect()
    body = data(3000, 2)
    store = [("to", "store")]
    x.send(c, "bulk", store, body)
    sent, rest, _ = x.chunks(c, "bulk", store, body, 1024)
    first_len = x.sends(c, sent)[0]
    ping = [("to", "calc"), ("method", "status")]
    x.send(c, "rpc", ping, b"?")
    x.sends(c, [x.message(c, "rpc", b"?", ping)])
    x.events(s, [x.msg_event("rpc", 0, ping, b"?")])
    x.sends(s, [{"type": "CREDIT", "target": "bulk", "increment": first_len}])
    second = rest[:1023]
    x.sends(c, [x.message(c, "bulk", second, store, first=False, last=False)])
    x.sends(s, [{"type": "CREDIT", "target": "bulk", "increment": 1024}])
    third = rest[1023:]
    x.sends(c, [x.message(c, "bulk", third, store, first=False, last=True)])
    x.events(s, [x.msg_event("bulk", 0, store, body)])
    return x.v


def abort_by_sender():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=1024)
    x = Script("abort-by-sender", ["§5.7.1", "§9.4", "§5.3.8"],
               "The sender's application cancels a message it has started: CANCEL with ABORT on "
               "its channel; the receiver discards it; the channel's next message starts with "
               "FIRST and the next sequence number.", c, s)
    x.connect()
    body = data(3000, 3)
    store = [("to", "store")]
    x.send(c, "bulk", store, body)
    sent, _, _ = x.chunks(c, "bulk", store, body, 1024)
    first_len = x.sends(c, sent)[0]
    x.send(c, "bulk", store, b"queued")  # waits behind message 0 (§7.3): not started
    x.app(c, "cancel", channel="bulk", id=1)  # an unstarted message just goes: no frame
    x.app(c, "cancel", channel="bulk", id=0)
    x.events(c, [{"event": "send_failed", "channel": "bulk", "id": 1, "code": "CANCELLED"},
                 {"event": "send_failed", "channel": "bulk", "id": 0, "code": "CANCELLED"}])
    x.sends(c, [{"type": "CANCEL", "channel": "bulk", "sequence": 0, "error_code": "CANCELLED",
                 "abort": True}])
    x.events(s, [{"event": "message_aborted", "channel": "bulk", "sequence": 0,
                  "code": "CANCELLED"}])
    x.sends(s, [{"type": "CREDIT", "target": "bulk", "increment": first_len}])
    x.send(c, "bulk", store, b"small")
    x.sends(c, [x.message(c, "bulk", b"small", store)])
    x.events(s, [x.msg_event("bulk", 1, store, b"small")])  # id 2, sequence 1
    return x.v


def cancel_by_receiver():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=1024)
    x = Script("cancel-by-receiver", ["§5.7.2", "§9.4"],
               "The receiver's application does not want a message that is still arriving: "
               "CANCEL without ABORT; the sender stops and answers with CANCEL ABORT; its "
               "application learns the message failed.", c, s)
    x.connect()
    store = [("to", "store")]
    x.send(c, "bulk", store, b"first")
    l0 = x.sends(c, [x.message(c, "bulk", b"first", store)])[0]
    x.events(s, [x.msg_event("bulk", 0, store, b"first")])
    x.app(s, "release", channel="bulk")  # the window (1,024 - l0) is under the threshold
    x.sends(s, [{"type": "CREDIT", "target": "bulk", "increment": l0}])
    body = data(3000, 4)
    x.send(c, "bulk", store, body)
    sent, _, _ = x.chunks(c, "bulk", store, body, 1024)
    first_len = x.sends(c, sent)[0]
    x.app(s, "reject_incoming", channel="bulk", sequence=1, code="CANCELLED")
    x.sends(s, [{"type": "CANCEL", "channel": "bulk", "sequence": 1, "error_code": "CANCELLED",
                 "abort": False},
                {"type": "CREDIT", "target": "bulk", "increment": first_len}])
    x.events(c, [{"event": "send_failed", "channel": "bulk", "id": 1, "code": "CANCELLED"}])
    x.sends(c, [{"type": "CANCEL", "channel": "bulk", "sequence": 1, "error_code": "CANCELLED",
                 "abort": True}])
    # The ABORT confirms it: the receiver's application hears that the message is gone.
    x.events(s, [{"event": "message_aborted", "channel": "bulk", "sequence": 1,
                  "code": "CANCELLED"}])
    return x.v


def goaway_drain():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=1024)
    x = Script("goaway-drain-close", ["§14.1.1", "§14.1.2", "§14.1.2.1", "§14.1.2.2", "§14.1.3",
                                      "§14.1.4", "§14.2.1"],
               "The server drains while the client's second message is half sent: GOAWAY "
               "accepts it (a partly received message counts), the client finishes it, its "
               "queued third message fails REFUSED; the server answers its first request (a "
               "reply is allowed after GOAWAY) and closes with NO_ERROR once the accepted "
               "message is complete and no reply is owed. A second goaway() sends nothing.", c, s)
    x.connect()
    calc = [("to", "calc")]
    x.send(c, "rpc", calc, b"A" * 10)
    a = x.message(c, "rpc", b"A" * 10, calc)
    a_len = x.sends(c, [a])[0]
    x.events(s, [x.msg_event("rpc", 0, calc, b"A" * 10)])
    x.app(s, "owe_replies", n=1)  # the server's application will answer message 0
    body = data(1500, 5)
    x.send(c, "rpc", calc, body)
    sent, rest, _ = x.chunks(c, "rpc", calc, body, 1024 - a_len)
    b_len = x.sends(c, sent)[0]
    x.send(c, "rpc", calc, b"C")
    x.app(s, "goaway", code="NO_ERROR", reason="drain")
    x.app(s, "goaway", code="NO_ERROR", reason="again")  # already draining: nothing
    # §14.1.1: message 1 has started, so rpc's accepted count is 2. Its first chunk is held
    # (§9.3: message 0, before it, is not yet released by the application): no CREDIT.
    x.sends(s, [{"type": "GOAWAY", "error_code": "NO_ERROR", "accepted_count": [0, 2, 0, 0],
                 "reason": "drain"}])
    x.events(c, [{"event": "send_failed", "channel": "rpc", "id": 2, "code": "REFUSED"},
                 {"event": "goaway", "code": "NO_ERROR"}])
    # The application takes message 0: its bytes and message 1's first chunk are released,
    # and urgent (the window is 0).
    x.app(s, "release", channel="rpc")
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": a_len + b_len}])
    x.sends(c, [x.message(c, "rpc", rest, calc, first=False, last=True)])
    x.events(s, [x.msg_event("rpc", 1, calc, body)])
    x.sends(s, [])  # §14.1.4: a reply is still owed, so no CLOSE yet
    x.send(s, "rpc", REPLY, b"=")
    x.app(s, "reply_settled")
    x.sends(s, [x.message(s, "rpc", b"=", REPLY),
                {"type": "CLOSE", "error_code": "NO_ERROR", "reason": "drained"}])
    x.events(s, [{"event": "closed", "code": "NO_ERROR", "initiator": "local"}])
    x.events(c, [x.msg_event("rpc", 0, REPLY, b"="),
                 {"event": "closed", "code": "NO_ERROR", "initiator": "peer"}])
    return x.v


def refused_over_budget():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=4096, MAX_FRAME_PAYLOAD=1024)
    x = Script("refused-over-reassembly-budget", ["§8.3.1", "§6.1.1", "§5.7.2"],
               "The server may reassemble 2,048 bytes per connection (a local bound, not a "
               "setting): the third chunk of a 10,000-byte message would exceed it, so the "
               "message alone is refused with CANCEL LIMIT_EXCEEDED; the sender aborts it and "
               "the next message is delivered on the same connection.", c, s,
               config={"server": {"max_reassembly": 2048}})
    x.connect()
    body = data(10000, 6)
    store = [("to", "store")]
    x.send(c, "bulk", store, body)
    sent, _, _ = x.chunks(c, "bulk", store, body, 4096)
    total = sum(x.sends(c, sent))
    x.events(s, [{"event": "message_refused", "channel": "bulk", "sequence": 0,
                  "code": "LIMIT_EXCEEDED"}])
    x.sends(s, [{"type": "CANCEL", "channel": "bulk", "sequence": 0,
                 "error_code": "LIMIT_EXCEEDED", "abort": False},
                {"type": "CREDIT", "target": "bulk", "increment": total}])
    x.events(c, [{"event": "send_failed", "channel": "bulk", "id": 0, "code": "LIMIT_EXCEEDED"}])
    x.sends(c, [{"type": "CANCEL", "channel": "bulk", "sequence": 0,
                 "error_code": "LIMIT_EXCEEDED", "abort": True}])
    calc = [("to", "calc")]
    x.send(c, "rpc", calc, b"still here")
    x.sends(c, [x.message(c, "rpc", b"still here", calc)])
    x.events(s, [{"event": "message_aborted", "channel": "bulk", "sequence": 0,
                  "code": "LIMIT_EXCEEDED"},
                 x.msg_event("rpc", 0, calc, b"still here")])
    return x.v


def unbound_schema():
    c, s = client(), server()
    x = Script("unbound-schema-id", ["§11.2.4", "§6.1.1"],
               "An rkyv message naming a Schema Id never bound: that message fails alone "
               "(SCHEMA_ERROR, UnknownSchemaId); the next one is delivered and nothing is "
               "closed.", c, s, roles=["server"])
    x.connect()
    calc = [("to", "calc")]
    bad = x.message(c, "rpc", bytes(16), calc, encoding="rkyv", schema_id=3)
    x.sends(c, [bad, x.message(c, "rpc", b"ok", calc)])
    x.events(s, [x.msg_event("rpc", 0, calc, bytes(16), encoding="rkyv",
                             error={"code": "SCHEMA_ERROR", "kind": "UnknownSchemaId"}),
                 x.msg_event("rpc", 1, calc, b"ok")])
    return x.v


def ping_pong():
    c, s = client(), server()
    x = Script("ping-newest-answered", ["§5.6", "§13.3"],
               "Two PINGs in one batch: the receiver answers with one PONG, for the newest "
               "(it MAY; a PING flood then costs bounded memory).", c, s, roles=["server"])
    x.connect()
    x.sends(c, [{"type": "PING", "opaque": "0101010101010101"},
                {"type": "PING", "opaque": "0202020202020202"}])
    x.sends(s, [{"type": "PONG", "opaque": "0202020202020202"}])
    return x.v


def ignorable_before_hello():
    c, s = client(), server()
    x = Script("ignorable-before-hello", ["§3.2.5", "§4.2.2"],
               "An ignorable frame type before the client's HELLO is a PROTOCOL_ERROR (ignorable "
               "types are skipped only once HELLO has been exchanged).", c, s, roles=["server"])
    x.sends(c, [{"type": "IGNORED", "frame_type": 0x80, "flags": 0, "payload": "00"},
                x.hello(c)])
    x.sends(s, [{"type": "CLOSE", "error_code": "PROTOCOL_ERROR", "reason": "",
                 "kind": "UnexpectedFrame"}])
    x.events(s, [{"event": "closed", "code": "PROTOCOL_ERROR", "initiator": "local"}])
    return x.v


def quic_streams():
    c, s = client(), server()
    x = Script("quic-streams", ["§17.2.1", "§17.2.2", "§17.3", "§17.5"],
               "Over QUIC: each side's control stream opens with channel id 0 and HELLO; an "
               "rpc message opens that side's rpc stream (channel id 1) and travels on it; no "
               "CREDIT is sent.", c, s, transport="quic")
    x.connect()
    big = data(20000, 12)
    x.send(c, "rpc", CALC, big)
    x.sends(c, [x.message(c, "rpc", big, CALC)], stream="rpc")
    x.events(s, [x.msg_event("rpc", 0, CALC, big)])
    x.app(s, "release", channel="rpc")
    x.send(s, "rpc", REPLY, b"\x06")
    x.sends(s, [x.message(s, "rpc", b"\x06", REPLY)], stream="rpc")
    x.events(c, [x.msg_event("rpc", 0, REPLY, b"\x06")])
    x.send(c, "rpc", CALC, b"\x07")
    x.sends(c, [x.message(c, "rpc", b"\x07", CALC)], stream="rpc")
    x.events(s, [x.msg_event("rpc", 1, CALC, b"\x07")])
    return x.v


def quic_wrong_stream():
    c, s = client(), server()
    x = Script("quic-frame-on-wrong-stream", ["§17.2.5", "§17.3"],
               "Over QUIC a PING belongs on the control stream: one on the rpc stream is a "
               "PROTOCOL_ERROR (CLOSE on the control stream).", c, s, roles=["server"],
               transport="quic")
    x.connect()
    x.sends(c, [{"type": "PING", "opaque": "0303030303030303"}], stream="rpc")
    x.sends(s, [{"type": "CLOSE", "error_code": "PROTOCOL_ERROR", "reason": "",
                 "kind": "WrongStream"}], stream="control")
    x.events(s, [{"event": "closed", "code": "PROTOCOL_ERROR", "initiator": "local"}])
    return x.v


def window_exceeded():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=1024)
    x = Script("window-exceeded", ["§9.2.3"],
               "Two MESSAGE frames that each fit the 1,024-byte channel window but together "
               "exceed it (no CREDIT between them): FLOW_CONTROL_ERROR on the second.", c, s,
               roles=["server"])
    x.connect()
    calc = [("to", "calc")]
    x.sends(c, [x.message(c, "rpc", data(600), calc), x.message(c, "rpc", data(600, 1), calc)])
    x.events(s, [x.msg_event("rpc", 0, calc, data(600))])
    x.sends(s, [{"type": "CLOSE", "error_code": "FLOW_CONTROL_ERROR", "reason": "",
                 "kind": "WindowExceeded"}])
    x.events(s, [{"event": "closed", "code": "FLOW_CONTROL_ERROR", "initiator": "local"}])
    return x.v


def connection_window_exceeded():
    c, s = client(), server(INITIAL_CONNECTION_WINDOW=2048)
    x = Script("connection-window-exceeded", ["§9.2.3", "§9.1"],
               "Two channels within their own windows but together over the connection window: "
               "FLOW_CONTROL_ERROR on the frame that exceeds it.", c, s, roles=["server"])
    x.connect()
    x.sends(c, [x.message(c, "rpc", data(1000), [("to", "calc")]),
                x.message(c, "stream", data(1100), [("to", "calc")])])
    x.events(s, [x.msg_event("rpc", 0, [("to", "calc")], data(1000))])
    x.sends(s, [{"type": "CLOSE", "error_code": "FLOW_CONTROL_ERROR", "reason": "",
                 "kind": "WindowExceeded"}])
    x.events(s, [{"event": "closed", "code": "FLOW_CONTROL_ERROR", "initiator": "local"}])
    return x.v


def credit_overflow():
    c, s = client(), server()
    x = Script("credit-overflow", ["§9.7", "§5.4"],
               "CREDIT may bring a window to exactly 2^32 - 1, never past it: the CREDIT that "
               "would is FLOW_CONTROL_ERROR.", c, s, roles=["client"])
    x.connect()
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": (1 << 32) - 1 - 1048576}])
    x.sends(c, [])
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": 1}])
    x.sends(c, [{"type": "CLOSE", "error_code": "FLOW_CONTROL_ERROR", "reason": "",
                 "kind": "WindowOverflow"}])
    x.events(c, [{"event": "closed", "code": "FLOW_CONTROL_ERROR", "initiator": "local"}])
    return x.v


def goaway_raised():
    c, s = client(), server()
    x = Script("goaway-raised", ["§14.1.5"],
               "A second GOAWAY may repeat or lower the accepted counts; raising one is a "
               "PROTOCOL_ERROR.", c, s, roles=["client"])
    x.connect()
    for counts in ([0, 5, 0, 0], [0, 5, 0, 0], [0, 4, 0, 0]):
        x.sends(s, [{"type": "GOAWAY", "error_code": "NO_ERROR", "accepted_count": counts,
                     "reason": ""}])
        x.sends(c, [])
    x.sends(s, [{"type": "GOAWAY", "error_code": "NO_ERROR", "accepted_count": [0, 5, 0, 0],
                 "reason": ""}])
    x.sends(c, [{"type": "CLOSE", "error_code": "PROTOCOL_ERROR", "reason": "",
                 "kind": "GoAwayRaised"}])
    x.events(c, [{"event": "goaway", "code": "NO_ERROR"}] * 3 +
             [{"event": "closed", "code": "PROTOCOL_ERROR", "initiator": "local"}])
    return x.v


def credit_batching():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=65536)
    x = Script("credit-batching", ["§9.5", "§9.5.2"],
               "When released credit leaves (channel windows 64 KiB: a quarter is 16 KiB; the "
               "connection's 4 MiB: a quarter is 1 MiB; the progress threshold 17,472): "
               "credit that is not urgent is not written on its own, and rides with a write "
               "that leaves anyway once it reaches 16 KiB; urgent credit leaves at once.", c, s)
    x.connect()
    calc = [("to", "calc")]
    # 12,000 bytes on stream and 6,000 on bulk, released: neither channel's credit is urgent
    # (under a quarter, windows far above the threshold), nor the connection's 18,000 (under
    # a quarter of 4 MiB): nothing is written.
    x.send(c, "stream", calc, data(12000, 7))
    l1 = x.sends(c, [x.message(c, "stream", data(12000, 7), calc)])[0]
    x.send(c, "bulk", calc, data(6000, 8))
    l2 = x.sends(c, [x.message(c, "bulk", data(6000, 8), calc)])[0]
    x.events(s, [x.msg_event("stream", 0, calc, data(12000, 7)),
                 x.msg_event("bulk", 0, calc, data(6000, 8))])
    x.app(s, "release", channel="stream")
    x.app(s, "release", channel="bulk")
    x.sends(s, [])
    # A reply leaves: the connection's pending credit (16 KiB or more) rides with it; the
    # channels' (each under 16 KiB) still wait.
    x.send(s, "rpc", REPLY, b"1")
    x.sends(s, [x.message(s, "rpc", b"1", REPLY),
                {"type": "CREDIT", "target": "connection", "increment": l1 + l2}])
    x.events(c, [x.msg_event("rpc", 0, REPLY, b"1")])
    # 17,000 bytes on rpc, released: a quarter of its window, urgent; the connection's
    # pending 17,000+ ride along.
    x.send(c, "rpc", calc, data(17000, 9))
    l3 = x.sends(c, [x.message(c, "rpc", data(17000, 9), calc)])[0]
    x.events(s, [x.msg_event("rpc", 0, calc, data(17000, 9))])
    x.app(s, "release", channel="rpc")
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": l3},
                {"type": "CREDIT", "target": "connection", "increment": l3}])
    return x.v


def connection_credit():
    c, s = client(), server(INITIAL_CONNECTION_WINDOW=2048)
    x = Script("connection-credit", ["§9.1", "§9.2.1", "§9.3.1", "§9.5"],
               "The connection window (2,048) runs out before the channel windows (1 MiB): a "
               "second channel's message waits for connection credit, which the receiver "
               "returns as soon as the chunk is released (the connection's outstanding window "
               "is below a quarter: urgent), and again as its application takes each message.",
               c, s)
    x.connect()
    calc = [("to", "calc")]
    a = data(500, 9)
    x.send(c, "rpc", calc, a)
    la = x.sends(c, [x.message(c, "rpc", a, calc)])[0]
    b = data(3000, 10)
    x.send(c, "stream", calc, b)
    sent, rest, _ = x.chunks(c, "stream", calc, b, 2048 - la)
    lb = x.sends(c, sent)[0]
    x.events(s, [x.msg_event("rpc", 0, calc, a)])
    x.sends(s, [{"type": "CREDIT", "target": "connection", "increment": lb}])
    tail, rest2, _ = x.chunks_after(c, "stream", rest, lb)
    assert not rest2
    lt = x.sends(c, tail)[0]
    x.events(s, [x.msg_event("stream", 0, calc, b)])
    x.app(s, "release", channel="rpc")
    x.sends(s, [{"type": "CREDIT", "target": "connection", "increment": la}])
    x.app(s, "release", channel="stream")
    x.sends(s, [{"type": "CREDIT", "target": "connection", "increment": lt}])
    return x.v


def close_with_queued():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=1024)
    x = Script("close-with-queued", ["§14.2.1", "§14.2.3"],
               "The client's application closes while a message is half sent and another "
               "waits: CLOSE is the last frame, both messages fail CANCELLED, and the server "
               "drops the partial message.", c, s)
    x.connect()
    store = [("to", "store")]
    body = data(3000, 11)
    x.send(c, "bulk", store, body)
    sent, _, _ = x.chunks(c, "bulk", store, body, 1024)
    x.sends(c, sent)
    x.send(c, "bulk", store, b"next")
    x.app(c, "close", code="NO_ERROR", reason="bye")
    x.sends(c, [{"type": "CLOSE", "error_code": "NO_ERROR", "reason": "bye"}])
    x.events(c, [{"event": "send_failed", "channel": "bulk", "id": 1, "code": "CANCELLED"},
                 {"event": "send_failed", "channel": "bulk", "id": 0, "code": "CANCELLED"},
                 {"event": "closed", "code": "NO_ERROR", "initiator": "local"}])
    x.events(s, [{"event": "closed", "code": "NO_ERROR", "initiator": "peer"}])
    return x.v


def close_twice():
    c, s = client(), server()
    x = Script("close-twice", ["§14.2", "§14.2.1"],
               "The application closes twice: the first close decides the CLOSE frame, and a "
               "second (another code, another reason) changes nothing — no second CLOSE, no "
               "second event.", c, s)
    x.connect()
    x.app(c, "close", code="NO_ERROR", reason="bye")
    x.sends(c, [{"type": "CLOSE", "error_code": "NO_ERROR", "reason": "bye"}])
    x.app(c, "close", code="INTERNAL_ERROR", reason="again")
    x.sends(c, [])
    x.events(c, [{"event": "closed", "code": "NO_ERROR", "initiator": "local"}])
    x.events(s, [{"event": "closed", "code": "NO_ERROR", "initiator": "peer"}])
    return x.v


def urgent_by_low_window():
    c, s = client(), server(INITIAL_CONNECTION_WINDOW=65536)
    x = Script("urgent-by-low-window", ["§9.5"],
               "A small release is urgent when the window it belongs to is low: 60,000 bytes "
               "held by the application on stream leave the connection's outstanding window "
               "under a quarter of 65,536, so releasing a 1,000-byte rpc message sends its "
               "connection credit at once (the rpc channel's own credit is not urgent).", c, s)
    x.connect()
    calc = [("to", "calc")]
    x.send(c, "stream", calc, data(60000, 13))
    x.sends(c, [x.message(c, "stream", data(60000, 13), calc)])
    x.send(c, "rpc", calc, data(1000, 14))
    l2 = x.sends(c, [x.message(c, "rpc", data(1000, 14), calc)])[0]
    x.events(s, [x.msg_event("stream", 0, calc, data(60000, 13)),
                 x.msg_event("rpc", 0, calc, data(1000, 14))])
    x.app(s, "release", channel="rpc")
    x.sends(s, [{"type": "CREDIT", "target": "connection", "increment": l2}])
    return x.v


def low_window_nothing_pending():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=65536)
    x = Script("low-window-nothing-pending", ["§9.5"],
               "A low window alone is no reason for a CREDIT: 60,000 bytes held by the "
               "application on stream leave that channel's window under a quarter of 65,536, "
               "but with nothing released on it there is nothing to return (a CREDIT "
               "increment of 0 is a PROTOCOL_ERROR, §5.4), so releasing a small rpc message "
               "sends nothing (neither its channel's credit nor the connection's is urgent). "
               "Releasing the "
               "stream message then is urgent, and the connection's pending credit rides "
               "along (16 KiB or more).", c, s)
    x.connect()
    calc = [("to", "calc")]
    x.send(c, "stream", calc, data(60000, 19))
    l1 = x.sends(c, [x.message(c, "stream", data(60000, 19), calc)])[0]
    x.send(c, "rpc", calc, data(1000, 20))
    l2 = x.sends(c, [x.message(c, "rpc", data(1000, 20), calc)])[0]
    assert 65536 - l1 < 65536 // 4
    x.events(s, [x.msg_event("stream", 0, calc, data(60000, 19)),
                 x.msg_event("rpc", 0, calc, data(1000, 20))])
    x.app(s, "release", channel="rpc")
    x.sends(s, [])
    x.app(s, "release", channel="stream")
    x.sends(s, [{"type": "CREDIT", "target": "stream", "increment": l1},
                {"type": "CREDIT", "target": "connection", "increment": l1 + l2}])
    return x.v


def queued_before_hello():
    c, s = client(), server(MAX_MESSAGE_SIZE=1024)
    x = Script("queued-before-hello", ["§3.2.5", "§5.3.2", "§9.5.3"],
               "Messages the client's application gives before the server's HELLO wait for it, "
               "and are then checked against the server's settings: one over its "
               "MAX_MESSAGE_SIZE fails alone (MESSAGE_TOO_LARGE, never sent), the other leaves.",
               c, s)
    calc = [("to", "calc")]
    x.send(c, "rpc", calc, data(2000, 15))
    x.send(c, "rpc", calc, b"fits")
    x.sends(c, [x.hello(c)])
    x.events(s, [{"event": "hello_received", "token": c.token.hex(), "agent": c.agent}])
    x.app(s, "accept", token="")
    x.events(s, [{"event": "connected", "version": V1_0}])
    x.sends(s, [x.hello(s)])
    x.events(c, [{"event": "send_failed", "channel": "rpc", "id": 0,
                  "code": "MESSAGE_TOO_LARGE"},
                 {"event": "connected", "version": V1_0}])
    x.sends(c, [x.message(c, "rpc", b"fits", calc)])
    x.events(s, [x.msg_event("rpc", 0, calc, b"fits")])
    return x.v


def empty_message_waits():
    c, s = client(), server(INITIAL_CHANNEL_WINDOW=1024)
    x = Script("empty-message-waits-for-credit", ["§9.2.1", "§9.5.1"],
               "An empty message still costs its frame's metadata: with the channel window at "
               "0 it waits for credit like any other.", c, s)
    x.connect()
    calc = [("to", "calc")]
    full = data(1012, 16)  # with 12 bytes of metadata: exactly the 1,024-byte window
    x.send(c, "rpc", calc, full)
    x.send(c, "rpc", calc, b"")
    lf = x.sends(c, [x.message(c, "rpc", full, calc)])[0]
    assert lf == 1024
    x.events(s, [x.msg_event("rpc", 0, calc, full)])
    x.app(s, "release", channel="rpc")
    x.sends(s, [{"type": "CREDIT", "target": "rpc", "increment": lf}])
    x.sends(c, [x.message(c, "rpc", b"", calc)])
    x.events(s, [x.msg_event("rpc", 1, calc, b"")])
    return x.v


def window_at_threshold():
    c, s = client(), server(INITIAL_CONNECTION_WINDOW=65536)
    x = Script("window-at-the-threshold", ["§9.5"],
               "Urgency is strict: a connection window left at exactly the progress threshold "
               "(16,384 + 1,088 = 17,472, above a quarter of 65,536) is not below it, so a "
               "small release waits.", c, s)
    x.connect()
    calc = [("to", "calc")]
    b = data(1000, 17)
    # L of a first frame on a fresh channel with header `to: calc` (6 bytes): payload + 14
    # for a payload of 16,384 or more (a 4-byte Message Length), + 12 below.
    a = data(65536 - 17472 - (1000 + 12) - 14, 18)
    x.send(c, "stream", calc, a)
    la = x.sends(c, [x.message(c, "stream", a, calc)])[0]
    x.send(c, "rpc", calc, b)
    lb = x.sends(c, [x.message(c, "rpc", b, calc)])[0]
    assert 65536 - la - lb == 17472, (la, lb)
    x.events(s, [x.msg_event("stream", 0, calc, a), x.msg_event("rpc", 0, calc, b)])
    x.app(s, "release", channel="rpc")
    x.sends(s, [])
    return x.v


def mp_str(t):
    """msgpack str, shortest form (fixstr, str8, str16)."""
    b = t.encode()
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    if len(b) < 256:
        return b"\xd9" + bytes([len(b)]) + b
    return b"\xda" + len(b).to_bytes(2, "big") + b


def mp_map(pairs):
    """msgpack fixmap of string pairs (at most 15), in order."""
    assert len(pairs) < 16
    return bytes([0x80 | len(pairs)]) + b"".join(mp_str(k) + mp_str(v) for k, v in pairs)


def legacy_handshake():
    """legacy.md §L4.1, §L4.2, §L3.1: a hypha-rpc client's handshake and one call each way.
    TEXT steps compare as JSON values; BINARY steps byte for byte (msgpack(main) ++ extra,
    every str in its shortest form)."""
    auth = {"client_id": "py-1", "workspace": "ws-a", "token": None, "reconnection_token": None}
    info = {"type": "connection_info", "hypha_version": "0.21.137",
            "public_base_url": "http://127.0.0.1:9527", "local_base_url": "http://127.0.0.1:9527",
            "manager_id": "manager-1", "workspace": "ws-a", "client_id": "py-1",
            "user": {"id": "anonymous-py-1", "roles": ["anonymous"]},
            "reconnection_token": None, "reconnection_token_life_time": 3600}
    call = [("type", "method"), ("from", "ws-a/py-1"), ("to", "ws-a/svc"),
            ("method", "services.echo.echo"), ("session", "s1")]
    extra = b"\x81" + mp_str("args") + b"\x91" + mp_str("hi")  # {"args": ["hi"]}
    answer = [("type", "method"), ("from", "ws-a/svc"), ("to", "ws-a/py-1"),
              ("method", "s1.resolve")]
    answer_extra = b"\x81" + mp_str("args") + b"\x91" + mp_str("hi")
    steps = [
        {"from": "client", "text": json.dumps(auth)},
        {"side": "server", "events": [{"event": "authenticate", "client_id": "py-1",
                                       "workspace": "ws-a"}]},
        {"side": "server", "app": {"action": "accept", "connection_info": json.dumps(info)}},
        {"side": "server", "app": {"action": "mark_ready"}},
        {"from": "server", "text": json.dumps(info)},
        {"side": "client", "events": [{"event": "connected", "workspace": "ws-a",
                                       "client_id": "py-1", "manager_id": "manager-1"}]},
        {"side": "client", "app": {"action": "send", "fields": [list(f) for f in call],
                                   "payload": extra.hex(), "id": 0}},
        {"from": "client", "binary": (mp_map(call) + extra).hex()},
        {"side": "server", "events": [{"event": "message", "channel": "rpc", "sequence": 0,
                                       "fields": [list(f) for f in call],
                                       "payload": extra.hex(), "encoding": "msgpack"}]},
        {"side": "server", "app": {"action": "send", "fields": [list(f) for f in answer],
                                   "payload": answer_extra.hex(), "id": 0}},
        {"from": "server", "binary": (mp_map(answer) + answer_extra).hex()},
        {"side": "client", "events": [{"event": "message", "channel": "rpc", "sequence": 0,
                                       "fields": [list(f) for f in answer],
                                       "payload": answer_extra.hex(),
                                       "encoding": "msgpack"}]},
    ]
    return {"name": "legacy-handshake-and-call", "sections": ["legacy.md §L4.1", "§L4.2",
                                                              "§L3.1", "§L3.2"],
            "description": "Legacy mode (no subprotocol): the client's authentication TEXT, the "
                           "server's connection_info once its application is ready, then one "
                           "BINARY message each way (msgpack main map ++ extra).",
            "transport": "legacy", "roles": ["client", "server"],
            "client": {"auth": auth}, "server": {}, "steps": steps}


VECTORS = [handshake_and_call, version_mismatch, version_not_offered, auth_refused,
           credit_stall, rpc_through_bulk, abort_by_sender, cancel_by_receiver, goaway_drain,
           refused_over_budget, unbound_schema, ping_pong, ignorable_before_hello, quic_streams,
           quic_wrong_stream, window_exceeded, connection_window_exceeded, credit_overflow,
           goaway_raised, credit_batching, connection_credit, urgent_by_low_window,
           close_with_queued, queued_before_hello, empty_message_waits, window_at_threshold,
           low_window_nothing_pending, close_twice, tail_under_a_kilobyte,
           stalled_channel_passed_over, legacy_handshake]


def main():
    doc = {
        "spec": "spec/wire.md Appendix A (session vectors)",
        "notes": "Replay as role R (each of `roles`): build R's session with R's settings, "
                 "token and agent (and `config`); feed the other side's `hex` in order; at each "
                 "step `from` R, collect everything R writes and compare frames as Appendix A "
                 "says (MESSAGE runs by content, headers by fields, CREDIT summed per target, "
                 "HELLO settings by effective value, PADDING ignored, a CLOSE's reason only by "
                 "its `kind` prefix); perform R's `app` steps; at R's `events` steps the events "
                 "R's application has seen since the last such step MUST be exactly these. At "
                 "the end R has nothing left to write and no event left unread.",
        "vectors": [f() for f in VECTORS],
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sessions.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    print(f"wrote {len(doc['vectors'])} session vectors to {path}")


if __name__ == "__main__":
    main()
