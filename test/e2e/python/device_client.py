"""A device client that Portcullis did not write, for the end-to-end tests.

It uses only the Python standard library and Debian's python3-websockets 10.4 (its legacy
``websockets.connect`` API). The device gets an access token from /oauth/token with
client_secret_basic, opens wss://localhost:<port>/ws with the token in the Authorization header,
subscribes to its own commands channel over the portcullis.v1 protocol, publishes to it and reads
its own message back. Then it tries again with the token in the query string, which the gateway
must reject.

Usage: device_client.py --port PORT --ca-file CA_PEM --client-id ID
The client secret comes from the PORTCULLIS_CLIENT_SECRET environment variable, so it never
appears in a process listing. The script prints one JSON object on one line and exits 0; any
unexpected failure raises, prints a traceback on stderr and exits 1.
"""

import argparse
import asyncio
import base64
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request

import websockets

TIMEOUT_SECONDS = 10
# Maximum number of frames the gateway may send before the awaited one. Past it the script gives up.
MAX_SKIPPED_FRAMES = 10
MESSAGE_DATA = {"text": "hello from python websockets", "sequence": 1}


def parse_args():
    parser = argparse.ArgumentParser(description="Portcullis device client over Python websockets.")
    parser.add_argument("--port", type=int, required=True, help="port of the server on localhost")
    parser.add_argument("--ca-file", required=True, help="PEM file of the CA that signed the server certificate")
    parser.add_argument("--client-id", required=True, help="client id of the registered device")
    return parser.parse_args()


def trusting_context(ca_file):
    """Build a TLS context that trusts only the given CA and checks the host name."""
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def jwt_claims(token):
    """Decode the payload of a compact JWT without verifying it, because the gateway verifies it."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))


def request_token(base_url, context, client_id, client_secret):
    """Request a client_credentials token with client_secret_basic (RFC 6749 section 2.3.1)."""
    # RFC 6749 section 2.3.1 form-encodes the id and secret before joining them.
    pair = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(client_secret, safe='')}"
    request = urllib.request.Request(
        f"{base_url}/oauth/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode("ascii"),
        headers={
            "Authorization": "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii"),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    # An empty ProxyHandler ignores any *_proxy environment variable, so the request stays on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
        return response.status, json.loads(response.read())


async def next_frame(websocket, pending, matches):
    """Return the first JSON frame for which matches(frame) is true, from pending or from the socket.

    Frames that do not match are appended to pending, because the gateway may send a `message`
    before the reply to the request that published it.
    """
    for index, frame in enumerate(pending):
        if matches(frame):
            return pending.pop(index)
    for _ in range(MAX_SKIPPED_FRAMES + 1):
        frame = json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_SECONDS))
        if matches(frame):
            return frame
        pending.append(frame)
    raise RuntimeError(f"the expected frame did not arrive among {MAX_SKIPPED_FRAMES + 1} frames: {pending}")


async def round_trip(websocket, client_id):
    """Subscribe to the device's commands channel, publish to it and return the requests, replies and message."""
    channel = f"devices/{client_id}/commands"
    # The protocol accepts string and integer ids, so the script sends one of each.
    subscribe = {"type": "subscribe", "id": "python-subscribe", "channel": channel}
    publish = {"type": "publish", "id": 2, "channel": channel, "data": MESSAGE_DATA}
    pending = []

    await websocket.send(json.dumps(subscribe))
    subscribed = await next_frame(websocket, pending, lambda frame: frame.get("id") == subscribe["id"])
    await websocket.send(json.dumps(publish))
    published = await next_frame(websocket, pending, lambda frame: frame.get("id") == publish["id"])
    message = await next_frame(websocket, pending, lambda frame: frame.get("type") == "message")
    return {
        "requests": {"subscribe": subscribe, "publish": publish},
        "subscribed": subscribed,
        "published": published,
        "message": message,
    }


async def connect_with_header(ws_url, context, client_id, access_token):
    """Open the socket with the bearer token in the header and return the welcome frame and a round trip."""
    headers = {"X-Client-Id": client_id, "Authorization": f"Bearer {access_token}"}
    async with websockets.connect(
        ws_url,
        ssl=context,
        extra_headers=headers,
        subprotocols=["portcullis.v1"],
        open_timeout=TIMEOUT_SECONDS,
    ) as websocket:
        welcome = json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_SECONDS))
        exchange = await round_trip(websocket, client_id)
        return {"subprotocol": websocket.subprotocol, "welcome": welcome, **exchange}


async def connect_with_query_token(ws_url, context, client_id, access_token):
    """Open the socket with the token in the query string, the misuse RFC 6750 section 5.3 warns about."""
    query = urllib.parse.urlencode({"access_token": access_token})
    try:
        async with websockets.connect(
            f"{ws_url}?{query}",
            ssl=context,
            extra_headers={"X-Client-Id": client_id},
            subprotocols=["portcullis.v1"],
            open_timeout=TIMEOUT_SECONDS,
        ):
            return {"accepted": True, "status": 101, "error": None}
    except websockets.exceptions.InvalidStatusCode as error:
        return {"accepted": False, "status": error.status_code, "error": error.headers.get("X-Portcullis-Error")}


async def main():
    args = parse_args()
    client_secret = os.environ["PORTCULLIS_CLIENT_SECRET"]
    context = trusting_context(args.ca_file)
    base_url = f"https://localhost:{args.port}"
    ws_url = f"wss://localhost:{args.port}/ws"

    status, body = request_token(base_url, context, args.client_id, client_secret)
    access_token = body["access_token"]
    token = {
        "status": status,
        "token_type": body.get("token_type"),
        "expires_in": body.get("expires_in"),
        "exp": jwt_claims(access_token).get("exp"),
    }

    header_auth = await connect_with_header(ws_url, context, args.client_id, access_token)
    query_auth = await connect_with_query_token(ws_url, context, args.client_id, access_token)
    print(json.dumps({"token": token, "header_auth": header_auth, "query_auth": query_auth}))


if __name__ == "__main__":
    asyncio.run(main())
