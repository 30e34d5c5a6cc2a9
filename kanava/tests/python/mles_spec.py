#!/usr/bin/env python3
"""Outside-client conformance test for kanava's Mles v2 listener.

Drives two running kanava servers with the real PyPI `websockets` library
(13 or later, asyncio API), the way a Python Mles client would, and checks
what such a client observes against /work/shared/specs/mles-v2.md.

    python3 mles_spec.py --url wss://127.0.0.1:PORT --cafile CERT.pem \
                         --keyed-url wss://127.0.0.1:PORT2 [--keyed-cafile CERT2.pem]

--url        a server without a shared key, history limit 200, max frame 16 MiB
--keyed-url  a server started with MLES_KEY=secretkey

Prints `ok <check>` for each passing check (plus indented `  note:` lines with
observations such as close codes). On the first failure prints
`FAIL <check>: <details>` to stderr and exits 1. Exits 0 when all checks pass.

Every check uses fresh channel names (a random per-run prefix), except the
spec's auth vector (uid authuser, channel authch), whose connections leave at
once. Every wait is bounded; the only "wait for nothing" waits are in negative
checks (nothing must arrive), and they are short.

Joins that must succeed end with a Ping/Pong barrier (see `sync_barrier`):
Mles has no join acknowledgement, and kanava handles each connection
independently, so without it a header sent first could be processed second.
The barrier Pings are relayed and stored by the server (spec §4) but are
invisible to `websockets` clients, whose recv() never returns Pings.

Count eviction (small --history-limit) and everything needing Ping frames to
be visible are left to the Rust suite.
"""

import argparse
import asyncio
import json
import re
import secrets
import ssl
import struct
import sys
import time
import traceback
import urllib.parse

try:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.protocol import State
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"FAIL setup: websockets 13+ (asyncio API) is required: {exc}", file=sys.stderr)
    sys.exit(1)

SUBPROTOCOL = "mles-websocket"
RECV_TIMEOUT = 5.0  # positive waits: something must arrive within this
CLOSE_TIMEOUT = 2.0  # a rejected connection must be closed within this
SILENCE = 0.5  # negative waits: nothing may arrive within this
REJECT_CODES = (1008, 1002, 1003, 1007)
MLES_KEY = b"secretkey"
MAX_QUEUE = 4096  # frames a connection buffers before it stops reading its socket


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def short(frame, limit=80):
    """A printable summary of a received frame."""
    if isinstance(frame, bytes):
        head = frame[:limit].hex()
        return f"binary[{len(frame)}] {head}{'...' if len(frame) > limit else ''}"
    text = frame if len(frame) <= limit else frame[:limit] + "..."
    return f"text[{len(frame)}] {text!r}"


# ---------------------------------------------------------------------------
# SipHash-2-4 (spec section 3)
# ---------------------------------------------------------------------------

_M64 = 0xFFFFFFFFFFFFFFFF


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & _M64


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 of `data` under the 16-byte `key`, as an unsigned 64-bit int."""
    assert len(key) == 16
    k0, k1 = struct.unpack("<QQ", key)
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]

    def sipround():
        v[0] = (v[0] + v[1]) & _M64
        v[1] = _rotl(v[1], 13) ^ v[0]
        v[0] = _rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & _M64
        v[3] = _rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & _M64
        v[3] = _rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & _M64
        v[1] = _rotl(v[1], 17) ^ v[2]
        v[2] = _rotl(v[2], 32)

    def compress(m):
        v[3] ^= m
        sipround()
        sipround()
        v[0] ^= m

    full = len(data) - len(data) % 8
    for i in range(0, full, 8):
        compress(int.from_bytes(data[i : i + 8], "little"))
    compress(((len(data) & 0xFF) << 56) | int.from_bytes(data[full:], "little"))
    v[2] ^= 0xFF
    for _ in range(4):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def mles_token(uid: str, channel: str, key: bytes = b"") -> str:
    """The Mles auth token: zero-key SipHash-2-4 over uid||channel[||key], 16 hex digits."""
    h = siphash24(bytes(16), uid.encode() + channel.encode() + key)
    return format(h, "016x")


# ---------------------------------------------------------------------------
# Connection helpers
# ---------------------------------------------------------------------------


class Ctx:
    def __init__(self, args):
        self.url = args.url
        self.keyed_url = args.keyed_url
        self.cafile = args.cafile
        self.ssl = self._ssl(args.cafile)
        self.keyed_ssl = self._ssl(args.keyed_cafile or args.cafile)
        self.prefix = "kspec-" + secrets.token_hex(4)
        self.notes = []

    @staticmethod
    def _ssl(cafile):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and hostname
        ctx.load_verify_locations(cafile)
        return ctx

    def chan(self, name):
        return f"{self.prefix}-{name}"

    def note(self, text):
        self.notes.append(text)


def ws_options(ctx, keyed=False, **overrides):
    opts = dict(
        subprotocols=[SUBPROTOCOL],
        ping_interval=None,
        max_size=None,
        compression=None,
        open_timeout=RECV_TIMEOUT,
        close_timeout=CLOSE_TIMEOUT,
        # Buffer unread frames (e.g. a replay nobody reads) instead of pausing
        # the socket, so that the server's Close is seen without draining them.
        max_queue=MAX_QUEUE,
        ssl=ctx.keyed_ssl if keyed else ctx.ssl,
    )
    opts.update(overrides)
    return opts


def with_path(url, path):
    """`url` with its path (and query) replaced by `path`, when `path` is given."""
    if not path:
        return url
    u = urllib.parse.urlsplit(url)
    p, _, q = path.partition("?")
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + p.lstrip("/"), q, ""))


async def close_quietly(ws):
    try:
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT + 1)
    except Exception:
        pass


class Session:
    """Tracks the connections a check opens and closes them all at the end."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.conns = []

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await asyncio.gather(*(close_quietly(ws) for ws in self.conns))

    async def open(self, keyed=False, path="", **overrides):
        url = with_path(self.ctx.keyed_url if keyed else self.ctx.url, path)
        try:
            ws = await asyncio.wait_for(
                connect(url, **ws_options(self.ctx, keyed, **overrides)), RECV_TIMEOUT + 1
            )
        except asyncio.TimeoutError:
            raise CheckFailed(f"connecting to {url} timed out")
        self.conns.append(ws)
        return ws

    async def join(self, uid, channel, keyed=False, auth=None, extra=None, barrier=True, **overrides):
        """Open a connection and send the join header. Returns the connection.

        With `barrier` (for joins that must succeed), waits until the server has
        processed the header and registered the member (see `barrier`)."""
        ws = await self.open(keyed, **overrides)
        header = {"uid": uid, "channel": channel}
        if auth is not None:
            header["auth"] = auth
        if extra:
            header.update(extra)
        await ws.send(json.dumps(header))
        if barrier:
            await sync_barrier(ws, f"join of uid {uid!r} to channel {channel!r}")
        return ws


async def sync_barrier(ws, what):
    """Waits until the server has processed every frame sent so far on `ws`.

    Mles has no join acknowledgement, and the server reads each connection
    independently, so a header or message sent on one connection may be
    processed after a header sent later on another one. The barrier is a
    Ping: the server reads a connection's frames in order and answers a Ping
    when it reads it, so the Pong proves that the earlier frames (the header:
    the member is registered; a message: it has its place in the channel's
    order) were handled. The Ping itself is relayed and stored (spec §4), but
    `websockets` never returns Pings from recv(), so it is invisible here.
    """
    try:
        pong = await ws.ping()
        await asyncio.wait_for(pong, RECV_TIMEOUT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"{what}: no Pong within {RECV_TIMEOUT} s")
    except ConnectionClosed as e:
        raise CheckFailed(f"{what}: connection closed ({close_desc(e)})")


async def recv(ws, what, timeout=RECV_TIMEOUT):
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise CheckFailed(f"{what}: nothing received within {timeout} s")
    except ConnectionClosed as e:
        raise CheckFailed(f"{what}: connection closed instead ({close_desc(e)})")


async def recv_until(ws, wanted, what, timeout=RECV_TIMEOUT):
    """Receive frames (skipping others, e.g. old history) until `wanted` arrives."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CheckFailed(f"{what}: {short(wanted)} not received within {timeout} s")
        frame = await recv(ws, what, left)
        if frame == wanted and type(frame) is type(wanted):
            return


async def expect_silence(ws, what, timeout=SILENCE):
    try:
        frame = await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        return
    except ConnectionClosed as e:
        raise CheckFailed(f"{what}: connection closed unexpectedly ({close_desc(e)})")
    raise CheckFailed(f"{what}: expected nothing, received {short(frame)}")


async def collect(ws, duration):
    """Everything received within `duration` seconds (bounded negative-style wait)."""
    frames = []
    deadline = time.monotonic() + duration
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return frames
        try:
            frames.append(await asyncio.wait_for(ws.recv(), left))
        except asyncio.TimeoutError:
            return frames
        except ConnectionClosed as e:
            raise CheckFailed(f"connection closed while collecting ({close_desc(e)})")


def close_desc(e):
    if e.rcvd is None:
        return "no close frame received (TCP closed)"
    return f"close code {e.rcvd.code} reason {e.rcvd.reason!r}"


async def expect_closed(ws, what, timeout=CLOSE_TIMEOUT):
    """The server must close `ws` within `timeout` s without sending any frame.
    Returns (close code or None, seconds taken)."""
    t0 = time.monotonic()
    try:
        frame = await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise CheckFailed(f"{what}: connection not closed within {timeout} s")
    except ConnectionClosed as e:
        return (e.rcvd.code if e.rcvd else None), time.monotonic() - t0
    raise CheckFailed(f"{what}: expected the connection to be closed, received {short(frame)}")


def expect_header(frame, uid, channel, what, extra=None):
    """`frame` must be a Text frame holding a JSON join header for uid/channel."""
    expect(isinstance(frame, str), f"{what}: expected a text header frame, got {short(frame)}")
    try:
        obj = json.loads(frame)
    except ValueError:
        raise CheckFailed(f"{what}: expected a JSON header, got {short(frame)}")
    expect(isinstance(obj, dict), f"{what}: header is not a JSON object: {short(frame)}")
    expect(
        obj.get("uid") == uid and obj.get("channel") == channel,
        f"{what}: expected header of uid={uid!r} channel={channel!r}, got {short(frame)}",
    )
    for k, v in (extra or {}).items():
        expect(obj.get(k) == v, f"{what}: header field {k!r} should be {v!r}: {short(frame)}")
    return obj


def expect_frame(frame, wanted, what):
    expect(
        type(frame) is type(wanted) and frame == wanted,
        f"{what}: expected {short(wanted)}, got {short(frame)}",
    )


async def relay_sanity(ctx, label):
    """A normal join + relay on a fresh channel must work."""
    c = ctx.chan(f"sanity-{label}")
    async with Session(ctx) as s:
        a = await s.join("sanity-a", c)
        b = await s.join("sanity-b", c)
        expect_header(await recv(b, "sanity: b replay"), "sanity-a", c, "sanity: b replay")
        await a.send(f"sanity-{label}")
        expect_frame(await recv(b, "sanity: relay"), f"sanity-{label}", "sanity: relay")


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


async def check_subprotocol(ctx):
    """§1: exact subprotocol echo, also when the client offers a list."""
    async with Session(ctx) as s:
        ws = await s.open()
        expect(ws.subprotocol == SUBPROTOCOL, f"subprotocol echoed as {ws.subprotocol!r}")
        raw = ws.response.headers.get_all("Sec-WebSocket-Protocol")
        expect(raw == [SUBPROTOCOL], f"101 Sec-WebSocket-Protocol headers: {raw!r}")
        ws2 = await s.open(subprotocols=["chat", SUBPROTOCOL])
        expect(ws2.subprotocol == SUBPROTOCOL, f"offer [chat, mles-websocket]: got {ws2.subprotocol!r}")
        raw = ws2.response.headers.get_all("Sec-WebSocket-Protocol")
        expect(raw == [SUBPROTOCOL], f"offer [chat, mles-websocket]: 101 header {raw!r}")
        # Any path and query is accepted (§1).
        ws3 = await s.open(path="any/path?x=1")
        expect(ws3.subprotocol == SUBPROTOCOL, f"path /any/path?x=1: got {ws3.subprotocol!r}")


async def check_no_subprotocol_refused(ctx):
    """§1: no upgrade without the subprotocol; a plain HTTPS GET is not upgraded: it gets a
    page (the reference serves its static site there, kanava its web chat) or a 4xx."""
    for label, protos in (("no subprotocol", None), ("wrong subprotocol", ["chat"])):
        try:
            ws = await asyncio.wait_for(
                connect(ctx.url, **ws_options(ctx, subprotocols=protos)), RECV_TIMEOUT + 1
            )
        except InvalidStatus as e:
            code = e.response.status_code
            expect(400 <= code < 500, f"{label}: refused with HTTP {code}, expected 4xx")
            ctx.note(f"{label}: HTTP {code}")
        except asyncio.TimeoutError:
            raise CheckFailed(f"{label}: no HTTP answer within {RECV_TIMEOUT} s")
        else:
            await close_quietly(ws)
            raise CheckFailed(f"{label}: upgrade accepted (subprotocol {ws.subprotocol!r})")

    u = urllib.parse.urlsplit(ctx.url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(u.hostname, u.port, ssl=ctx.ssl), RECV_TIMEOUT
    )
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), RECV_TIMEOUT)
        expect(
            re.match(rb"^HTTP/1\.1 (200|4\d\d)( |\r\n)", line) is not None,
            f"plain HTTPS GET: status line {line!r}, expected HTTP/1.1 200 (a page) or 4xx",
        )
        ctx.note(f"plain GET: {line.decode(errors='replace').strip()}")
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
        except Exception:
            pass


async def check_no_extensions_no_h2(ctx):
    """§1: no permessage-deflate even when offered; ALPN never selects h2."""
    async with Session(ctx) as s:
        ws = await s.open(compression="deflate")
        ext = ws.response.headers.get_all("Sec-WebSocket-Extensions")
        expect(not ext, f"server negotiated extensions {ext!r}")
    u = urllib.parse.urlsplit(ctx.url)
    actx = Ctx._ssl(ctx.cafile)
    actx.set_alpn_protocols(["h2", "http/1.1"])
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(u.hostname, u.port, ssl=actx), RECV_TIMEOUT
    )
    try:
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        expect(alpn in (None, "http/1.1"), f"ALPN offer [h2, http/1.1]: server selected {alpn!r}")
        ctx.note(f"ALPN selected: {alpn!r}")
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
        except Exception:
            pass


async def check_relay(ctx):
    """§4: relay to others, type and bytes kept, no echo, empty and 1 MiB frames."""
    c = ctx.chan("relay")
    async with Session(ctx) as s:
        alice = await s.join("alice", c)
        bob = await s.join("bob", c)
        expect_header(await recv(bob, "bob: replay"), "alice", c, "bob: replay of alice's header")
        big = secrets.token_bytes(1 << 20)
        sent = ["hello", b"\x00\x01\x02", "", b"", big]
        for m in sent:
            await alice.send(m)
        for m in sent:
            expect_frame(await recv(bob, "bob: relay"), m, "bob: relay")
        await expect_silence(bob, "bob after the relayed frames")
        await expect_silence(alice, "alice (no echo)")


async def check_other_channels(ctx):
    """§4: other channels see nothing."""
    c, d = ctx.chan("talk"), ctx.chan("quiet")
    async with Session(ctx) as s:
        carol = await s.join("carol", d)
        alice = await s.join("alice", c)
        bob = await s.join("bob", c)
        expect_header(await recv(bob, "bob: replay"), "alice", c, "bob: replay")
        await alice.send("for bob")
        await alice.send(b"\xffbinary for bob")
        await bob.send("for alice")
        expect_frame(await recv(bob, "bob"), "for bob", "bob")
        expect_frame(await recv(bob, "bob"), b"\xffbinary for bob", "bob")
        expect_frame(await recv(alice, "alice"), "for alice", "alice")
        await expect_silence(carol, "carol in another channel")


async def check_history_transcript(ctx):
    """§5: the observed transcript (alice, bob, late carol)."""
    c = ctx.chan("test")
    binary = bytes(range(16))
    async with Session(ctx) as s:
        alice = await s.join("alice", c)
        await alice.send("msg-1 (alone)")
        await sync_barrier(alice, "alice after msg-1")  # msg-1 is ordered before bob's join
        bob = await s.join("bob", c, extra={"extra": 123})
        expect_header(await recv(bob, "bob replay 1"), "alice", c, "bob replay 1")
        expect_frame(await recv(bob, "bob replay 2"), "msg-1 (alone)", "bob replay 2")
        await alice.send("Hello Bob!")
        await alice.send(binary)
        expect_frame(await recv(bob, "bob live 1"), "Hello Bob!", "bob live 1")
        expect_frame(await recv(bob, "bob live 2"), binary, "bob live 2")
        await bob.send("Hi Alice!")
        expect_frame(await recv(alice, "alice live"), "Hi Alice!", "alice live")
        carol = await s.join("carol", c)
        got = [await recv(carol, f"carol replay {i + 1}") for i in range(6)]
        expect_header(got[0], "alice", c, "carol replay 1")
        expect_frame(got[1], "msg-1 (alone)", "carol replay 2")
        expect_header(got[2], "bob", c, "carol replay 3", extra={"extra": 123})
        expect_frame(got[3], "Hello Bob!", "carol replay 4")
        expect_frame(got[4], binary, "carol replay 5")
        expect_frame(got[5], "Hi Alice!", "carol replay 6")
        await expect_silence(carol, "carol (no own header, nothing else)")
        await expect_silence(alice, "alice (no join notices)")
        await expect_silence(bob, "bob (no join notices)")


async def check_own_history(ctx):
    """§5: a joiner gets its own earlier header and messages."""
    c = ctx.chan("own")
    async with Session(ctx) as s:
        alice = await s.join("alice", c, extra={"n": 1})
        await alice.send("mine")
        await alice.close()
        alice2 = await s.join("alice", c, extra={"n": 2})
        expect_header(await recv(alice2, "rejoin replay 1"), "alice", c, "rejoin replay 1", extra={"n": 1})
        expect_frame(await recv(alice2, "rejoin replay 2"), "mine", "rejoin replay 2")
        await expect_silence(alice2, "rejoin (no current header)")


async def check_duplicates(ctx):
    """§6: a duplicate (uid, channel) is closed; the first is unaffected; rejoin later works."""
    c = ctx.chan("dup")
    async with Session(ctx) as s:
        first = await s.join("alice", c, extra={"n": 1})
        dup = await s.join("alice", c, extra={"n": 2}, barrier=False)
        code, took = await expect_closed(dup, "duplicate join")
        ctx.note(f"duplicate closed with code {code} after {took * 1000:.0f} ms")
        bob = await s.join("bob", c)
        expect_header(await recv(bob, "bob replay"), "alice", c, "bob replay", extra={"n": 1})
        await first.send("still here")
        expect_frame(await recv(bob, "bob relay"), "still here", "bob relay (duplicate header must not be stored)")
        await bob.send("to first")
        expect_frame(await recv(first, "first relay"), "to first", "first alice relay")
        await first.close()
        again = await s.join("alice", c, extra={"n": 3})
        expect_header(await recv(again, "rejoin replay 1"), "alice", c, "rejoin replay 1", extra={"n": 1})
        expect_header(await recv(again, "rejoin replay 2"), "bob", c, "rejoin replay 2")
        expect_frame(await recv(again, "rejoin replay 3"), "still here", "rejoin replay 3")
        expect_frame(await recv(again, "rejoin replay 4"), "to first", "rejoin replay 4")
        await again.send("back")
        expect_frame(await recv(bob, "bob relay after rejoin"), "back", "bob relay after rejoin")
        # The same uid may be in another channel at the same time (the join
        # barrier fails if this connection is closed).
        await s.join("alice", ctx.chan("dup-other"))


async def check_bad_headers(ctx):
    """§2/§9: bad headers are closed promptly with a status code; the server keeps working."""
    for label, frame in bad_header_cases(ctx):
        async with Session(ctx) as s:
            ws = await s.open()
            if frame is PING_FIRST:
                await ws.ping(b"before the header")
            else:
                await ws.send(frame)
            code, took = await expect_closed(ws, f"bad header '{label}'")
            expect(
                code in REJECT_CODES,
                f"bad header '{label}': closed with code {code}, expected one of {REJECT_CODES}",
            )
            ctx.note(f"bad header {label}: close code {code} after {took * 1000:.0f} ms")
        await relay_sanity(ctx, f"bad-{label}")


PING_FIRST = object()  # a Ping as the first frame, instead of a header


def bad_header_cases(ctx):
    c = ctx.chan("bad")
    return [
        ("non-json text", "hello"),
        ("binary json", json.dumps({"uid": "u", "channel": c}).encode()),
        ("ping before header", PING_FIRST),
        ("missing uid", json.dumps({"channel": c})),
        ("missing channel", json.dumps({"uid": "u"})),
        ("uid number", json.dumps({"uid": 123, "channel": c})),
        ("channel number", json.dumps({"uid": "u", "channel": 7})),
        ("empty uid", json.dumps({"uid": "", "channel": c})),
        ("empty channel", json.dumps({"uid": "u", "channel": ""})),
        ("non-ascii uid", json.dumps({"uid": "ä", "channel": c}, ensure_ascii=False)),
        ("non-ascii uid escaped", json.dumps({"uid": "\u00e4", "channel": c})),
        ("non-ascii channel", json.dumps({"uid": "u", "channel": c + "ä"}, ensure_ascii=False)),
        ("json array", json.dumps(["u", c])),
        ("header over 64 KiB", json.dumps({"uid": "u", "channel": c, "pad": "x" * (70 * 1024)})),
    ]


async def check_siphash_vectors(ctx):
    """§3: the script's own SipHash-2-4 against the spec's vectors."""
    got = siphash24(bytes(range(16)), bytes(range(15)))
    expect(got == 0xA129CA6149BE45E5, f"siphash key 00..0f msg 00..0e = {got:016x}")
    got = siphash24(bytes(16), b"")
    expect(got == 0x1E924B9D737700D7, f"siphash zero key empty = {got:016x}")
    vectors = [
        ("authuser", "authch", b"", "827d5db8dcd8bcef"),
        ("authuser", "authch", MLES_KEY, "476c18c50edcef7a"),
        ("alice", "example", b"", "9b3b95527f7c2d80"),
        ("alice", "example", MLES_KEY, "8d84c715250367b0"),
    ]
    for uid, ch, key, want in vectors:
        got = mles_token(uid, ch, key)
        expect(got == want, f"token({uid}, {ch}, {key!r}) = {got}, expected {want}")


async def auth_accepted(ctx, s, uid, channel, auth, peer, keyed, what):
    """Join with `auth`; prove the join was accepted by relaying a marker to `peer`."""
    ws = await s.join(uid, channel, keyed=keyed, auth=auth)
    marker = f"{ctx.prefix} {what}"
    await ws.send(marker)
    try:
        await recv_until(peer, marker, what)
    except CheckFailed as e:
        raise CheckFailed(f"{e} (the {what} connection state is {ws.state.name}, close code {ws.close_code})")
    await ws.close()


async def auth_refused(ctx, s, uid, channel, auth, keyed, what):
    ws = await s.join(uid, channel, keyed=keyed, auth=auth, barrier=False)
    code, took = await expect_closed(ws, what)
    ctx.note(f"{what}: refused, close code {code} after {took * 1000:.0f} ms")


async def check_auth_no_key(ctx):
    """§3 without MLES_KEY: the vector is accepted in either case, a wrong token refused."""
    async with Session(ctx) as s:
        # The peer only proves acceptance; old history of authch is skipped.
        peer = await s.join(f"peer-{ctx.prefix}", "authch")
        await auth_accepted(ctx, s, "authuser", "authch", "827d5db8dcd8bcef", peer, False, "lowercase token")
        await auth_accepted(ctx, s, "authuser", "authch", "827D5DB8DCD8BCEF", peer, False, "uppercase token")
        await auth_refused(ctx, s, "authuser", "authch", "0000000000000001", False, "wrong token")
        # Computed tokens for fresh identities.
        c = ctx.chan("auth")
        a, b = f"a-{ctx.prefix}", f"b-{ctx.prefix}"
        bob = await s.join(b, c, auth=mles_token(b, c))
        await auth_accepted(ctx, s, a, c, mles_token(a, c), bob, False, "computed token")
        wrong = format(int(mles_token(a, c), 16) ^ 1, "016x")
        await auth_refused(ctx, s, a, c, wrong, False, "computed token with one bit flipped")
        await auth_refused(ctx, s, a, c, mles_token(a, c, MLES_KEY), False, "keyed token on a keyless server")
        await auth_refused(ctx, s, a, c, "", False, "empty auth string")


async def check_auth_keyed(ctx):
    """§3 with MLES_KEY=secretkey: auth required and must be the keyed token."""
    async with Session(ctx) as s:
        peer_uid = f"peer-{ctx.prefix}"
        peer = await s.join(peer_uid, "authch", keyed=True, auth=mles_token(peer_uid, "authch", MLES_KEY))
        await auth_refused(ctx, s, "authuser", "authch", None, True, "keyed: no auth")
        await auth_refused(ctx, s, "authuser", "authch", "827d5db8dcd8bcef", True, "keyed: unkeyed token")
        await auth_accepted(ctx, s, "authuser", "authch", "476c18c50edcef7a", peer, True, "keyed: lowercase token")
        await auth_accepted(ctx, s, "authuser", "authch", "476C18C50EDCEF7A", peer, True, "keyed: uppercase token")
        c = ctx.chan("keyed")
        a, b = f"a-{ctx.prefix}", f"b-{ctx.prefix}"
        alice = await s.join(a, c, keyed=True, auth=mles_token(a, c, MLES_KEY))
        bob = await s.join(b, c, keyed=True, auth=mles_token(b, c, MLES_KEY))
        expect_header(await recv(bob, "keyed bob replay"), a, c, "keyed bob replay")
        await alice.send(b"\x01keyed relay")
        expect_frame(await recv(bob, "keyed relay"), b"\x01keyed relay", "keyed relay")
        await bob.send("keyed reply")
        expect_frame(await recv(alice, "keyed reply"), "keyed reply", "keyed reply")


async def check_auth_not_revealed(ctx):
    """D3: a stored header loses its auth; the token is never sent to anyone else."""
    for keyed in (False, True):
        what = "keyed server" if keyed else "keyless server"
        c = ctx.chan("secret-k" if keyed else "secret")
        a, b = f"a-{ctx.prefix}", f"b-{ctx.prefix}"
        token = mles_token(a, c, MLES_KEY if keyed else b"")
        async with Session(ctx) as s:
            alice = await s.join(a, c, keyed=keyed, auth=token, extra={"x": "kept"})
            await alice.send("from a")
            await alice.close()
            bob = await s.join(b, c, keyed=keyed, auth=mles_token(b, c, MLES_KEY) if keyed else None)
            got = await collect(bob, 1.0)
        expect(len(got) >= 2, f"{what}: B received {len(got)} frames, expected A's header and message")
        obj = expect_header(got[0], a, c, f"{what}: B replay 1", extra={"x": "kept"})
        expect("auth" not in obj, f"{what}: replayed header still has auth: {short(got[0])}")
        expect_frame(got[1], "from a", f"{what}: B replay 2")
        for frame in got:
            blob = frame.encode() if isinstance(frame, str) else frame
            for t in (token, token.upper()):
                expect(t.encode() not in blob, f"{what}: token {t} found in {short(frame)}")


async def check_atomic_join(ctx):
    """§5 atomicity: joiners during a fast stream see every message exactly once, in order.

    A publisher streams "0".."499" as fast as it can, with at most WINDOW
    messages in flight (a monitor member of the channel acknowledges them by
    receiving them live), so the server's position in the stream stays close
    to the publisher's. Five joiners have their connections upgraded
    beforehand (a join is just the header frame); joiner j sends its header
    right after the publisher has sent message JOIN_AT[j], so the joins land in
    the middle of the stream. Each joiner collects replay + live frames,
    ignoring headers (JSON objects). With the default history limit of 200
    entries a joiner that lands late legitimately starts after message 0
    (older entries were evicted); what must hold for every joiner is an exact,
    gap-free, duplicate-free run up to the last message, and a start after 0
    only when the replay was a full 200-entry history.
    """
    c = ctx.chan("atomic")
    n = 500
    window = 20
    join_at = (10, 100, 190, 280, 400)  # publisher progress at which each joiner joins
    limit = 200  # the --url server's history limit
    async with Session(ctx) as s:
        # No barriers here: nothing below depends on the order of these joins.
        monitor = await s.join("monitor", c, barrier=False)
        pub = await s.join("publisher", c, barrier=False)
        joiners = [await s.open() for _ in join_at]
        seen = -1  # last message the monitor has received

        async def monitor_next():
            nonlocal seen
            while True:
                f = await recv(monitor, f"monitor (expecting message {seen + 1})", 10)
                if isinstance(f, str) and f.startswith("{"):
                    continue  # the publisher's header, if the monitor joined after it
                expect_frame(f, str(seen + 1), "monitor")
                seen += 1
                return

        for i in range(n):
            while i - seen > window:
                await monitor_next()
            await pub.send(str(i))
            for j, at in enumerate(join_at):
                if at == i:
                    await joiners[j].send(json.dumps({"uid": f"joiner-{j}", "channel": c}))
        while seen < n - 1:
            await monitor_next()

        async def gather_frames(j, ws):
            what = f"joiner {j} (joined after message {join_at[j]} was sent)"
            frames = []
            deadline = time.monotonic() + 10
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CheckFailed(
                        f"{what}: message {n - 1} not received within 10 s ({len(frames)} frames)"
                    )
                f = await recv(ws, what, left)
                frames.append(f)
                if f == str(n - 1):
                    break
            # Headers stored after the last message may still be in the replay.
            return frames + await collect(ws, SILENCE)

        results = await asyncio.gather(*(gather_frames(j, ws) for j, ws in enumerate(joiners)))

    firsts = []
    landed = {}  # joiner uid -> last message stored before its header (server-side join point)
    for j, frames in enumerate(results):
        what = f"joiner {j} (joined after message {join_at[j]} was sent)"
        nums = []
        for f in frames:
            expect(isinstance(f, str), f"{what}: unexpected binary frame {short(f)}")
            if f.startswith("{"):
                obj = json.loads(f)
                expect(isinstance(obj, dict) and "uid" in obj, f"{what}: odd frame {short(f)}")
                landed.setdefault(obj["uid"], nums[-1] if nums else None)
                continue
            expect(f.isdigit(), f"{what}: unexpected frame {short(f)}")
            nums.append(int(f))
        expect(nums, f"{what}: no messages")
        start = nums[0]
        expected = list(range(start, n))
        if nums != expected:
            dup = sorted({x for x in nums if nums.count(x) > 1})
            missing = sorted(set(expected) - set(nums))
            raise CheckFailed(
                f"{what}: messages not exactly {start}..{n - 1} in order: "
                f"{len(nums)} received, duplicates {dup[:10]}, missing {missing[:10]}"
            )
        # Message 0 can only be missing when it was evicted, i.e. when the
        # replay was a full history of `limit` entries.
        expect(
            start == 0 or len(frames) >= limit,
            f"{what}: replay started at message {start} but only {len(frames)} frames arrived "
            f"(message 0 can only be missing when the {limit}-entry history was full)",
        )
        firsts.append(start)
    points = [landed.get(f"joiner-{j}", "?") for j in range(len(join_at) - 1)]
    ctx.note(
        f"atomic join: joiners' first message numbers {firsts} (history limit {limit}); "
        f"server-side join points of joiners 0..3 (last message before their stored header): {points}"
    )


async def check_client_pings(ctx):
    """§4/§7: a client sending websockets pings each second stays connected and relays."""
    c = ctx.chan("pings")
    async with Session(ctx) as s:
        pinger = await s.join("pinger", c, ping_interval=1, ping_timeout=2)
        other = await s.join("other", c)
        expect_header(await recv(other, "other replay"), "pinger", c, "other replay")
        await expect_silence(other, "other while pinger pings (pings are invisible)", timeout=3.0)
        await expect_silence(pinger, "pinger", timeout=0.01)
        expect(pinger.state is State.OPEN, f"pinger closed after 3 s: {pinger.state.name}")
        waiter = await pinger.ping(b"explicit")
        try:
            await asyncio.wait_for(waiter, RECV_TIMEOUT)
        except asyncio.TimeoutError:
            raise CheckFailed("no Pong for an explicit Ping within 5 s")
        expect(pinger.latency > 0, f"no Pong for the keepalive pings (latency {pinger.latency})")
        await pinger.send("after pings")
        expect_frame(await recv(other, "relay after pings"), "after pings", "relay after pings")
        ctx.note(f"ping latency {pinger.latency * 1000:.1f} ms")


CHECKS = [
    ("subprotocol-echoed", check_subprotocol),
    ("upgrade-without-subprotocol-refused", check_no_subprotocol_refused),
    ("no-extensions-no-h2", check_no_extensions_no_h2),
    ("relay", check_relay),
    ("other-channels-see-nothing", check_other_channels),
    ("history-transcript", check_history_transcript),
    ("own-history-replayed", check_own_history),
    ("duplicate-uid-channel", check_duplicates),
    ("bad-headers-closed", check_bad_headers),
    ("siphash-vectors", check_siphash_vectors),
    ("auth-without-key", check_auth_no_key),
    ("auth-with-key", check_auth_keyed),
    ("auth-never-revealed", check_auth_not_revealed),
    ("atomic-join-under-load", check_atomic_join),
    ("client-pings", check_client_pings),
]


async def guarded(fn, ctx):
    """Runs a check; a stray TimeoutError from inside it is a failure with its origin."""
    try:
        await fn(ctx)
    except (TimeoutError, asyncio.TimeoutError) as e:
        tb = traceback.extract_tb(e.__traceback__)
        where = "; ".join(f"{f.name}:{f.lineno}" for f in tb[1:])
        raise CheckFailed(f"timed out inside the check ({where}): {e!r}")


async def run(args):
    ctx = Ctx(args)
    t_all = time.monotonic()
    for name, fn in CHECKS:
        if args.only and name not in args.only:
            continue
        ctx.notes = []
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(guarded(fn, ctx), args.check_timeout)
        except CheckFailed as e:
            print(f"FAIL {name}: {e}", file=sys.stderr)
            return 1
        except asyncio.TimeoutError:
            print(f"FAIL {name}: check did not finish within {args.check_timeout} s", file=sys.stderr)
            return 1
        except Exception as e:  # unexpected client-side error: still a failure
            print(f"FAIL {name}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(f"ok {name}" + (f" ({time.monotonic() - t0:.2f} s)" if args.verbose else ""))
        for n in ctx.notes:
            print(f"  note: {n}")
        sys.stdout.flush()
    if args.verbose:
        print(f"all checks passed in {time.monotonic() - t_all:.2f} s")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="wss:// URL of a kanava server without MLES_KEY")
    p.add_argument("--cafile", required=True, help="PEM certificate to trust for --url")
    p.add_argument("--keyed-url", required=True, help="wss:// URL of a kanava server with MLES_KEY=secretkey")
    p.add_argument("--keyed-cafile", help="PEM certificate for --keyed-url (default: --cafile)")
    p.add_argument("--only", action="append", help="run only this check (repeatable)")
    p.add_argument("--check-timeout", type=float, default=60.0, help="upper bound per check, seconds")
    p.add_argument("--verbose", action="store_true", help="print timings")
    args = p.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
