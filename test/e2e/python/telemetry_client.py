"""A telemetry device that Portcullis did not write, for the end-to-end tests.

It uses only the Python standard library and Debian's python3-websockets 10.4 (its legacy
``websockets.connect`` API). The device gets an access token from /oauth/token with
client_secret_basic, connects with the token in the Authorization header, subscribes to its
commands channel, tries one publish its token does not allow, publishes COUNT telemetry messages
on devices/<client id>/telemetry and then waits for one message on its commands channel.

Usage: telemetry_client.py --port PORT --ca-file CA_PEM --client-id ID --count COUNT
The client secret comes from the PORTCULLIS_CLIENT_SECRET environment variable, so it never
appears in a process listing. The script prints one JSON object on one line and exits 0; any
unexpected frame, close or timeout raises, prints a traceback on stderr and exits 1.
"""

import argparse
import asyncio
import json
import os

import websockets

# The OAuth helpers are shared with the other device client in this folder, which the script's own
# folder on sys.path makes importable.
from device_client import TIMEOUT_SECONDS, request_token, trusting_context

# The test sends the command only after a browser has received all the telemetry, which takes longer.
COMMAND_TIMEOUT_SECONDS = 60


def parse_args():
    parser = argparse.ArgumentParser(description="Portcullis telemetry device over Python websockets.")
    parser.add_argument("--port", type=int, required=True, help="port of the server on localhost")
    parser.add_argument("--ca-file", required=True, help="PEM file of the CA that signed the server certificate")
    parser.add_argument("--client-id", required=True, help="client id of the registered device")
    parser.add_argument("--count", type=int, required=True, help="number of telemetry messages to publish")
    return parser.parse_args()


class FrameReader:
    """JSON frame reader that returns the first matching frame and keeps the others for later calls."""

    def __init__(self, websocket):
        self.websocket = websocket
        self.pending = []

    async def expect(self, matches, timeout=TIMEOUT_SECONDS):
        for index, frame in enumerate(self.pending):
            if matches(frame):
                return self.pending.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame within {timeout} s; unmatched frames: {self.pending}")
            frame = json.loads(await asyncio.wait_for(self.websocket.recv(), remaining))
            if matches(frame):
                return frame
            self.pending.append(frame)

    async def reply_to(self, request_id):
        """Return the reply or error frame that echoes ``request_id``."""
        return await self.expect(lambda frame: frame.get("id") == request_id and frame.get("type") != "message")


async def run_device(ws_url, context, client_id, access_token, count):
    """Subscribe, publish and wait for a command, then return every frame the test checks."""
    headers = {"X-Client-Id": client_id, "Authorization": f"Bearer {access_token}"}
    commands = f"devices/{client_id}/commands"
    async with websockets.connect(
        ws_url,
        ssl=context,
        extra_headers=headers,
        subprotocols=["portcullis.v1"],
        open_timeout=TIMEOUT_SECONDS,
    ) as websocket:
        reader = FrameReader(websocket)
        welcome = await reader.expect(lambda frame: frame.get("type") == "welcome")

        await websocket.send(json.dumps({"type": "subscribe", "id": "sub-1", "channel": commands}))
        subscribed = await reader.reply_to("sub-1")

        await websocket.send(json.dumps({"type": "publish", "id": "foreign-1", "channel": "devices/not-me/telemetry", "data": 0}))
        forbidden = await reader.reply_to("foreign-1")

        published = []
        for seq in range(count):
            frame = {"type": "publish", "id": seq, "channel": f"devices/{client_id}/telemetry", "data": {"seq": seq, "watts": 100 + seq}}
            await websocket.send(json.dumps(frame))
            published.append(await reader.reply_to(seq))

        command = await reader.expect(lambda frame: frame.get("type") == "message", COMMAND_TIMEOUT_SECONDS)
        return {
            "subprotocol": websocket.subprotocol,
            "welcome": welcome,
            "subscribed": subscribed,
            "forbidden": forbidden,
            "published": published,
            "command": command,
        }


async def main():
    args = parse_args()
    client_secret = os.environ["PORTCULLIS_CLIENT_SECRET"]
    context = trusting_context(args.ca_file)
    status, body = request_token(f"https://localhost:{args.port}", context, args.client_id, client_secret)
    if status != 200:
        raise SystemExit(f"token request failed with status {status}")
    access_token = body["access_token"]
    result = await run_device(f"wss://localhost:{args.port}/ws", context, args.client_id, access_token, args.count)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
