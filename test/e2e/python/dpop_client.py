"""A DPoP device client that Portcullis did not write, for the end-to-end tests.

It builds every DPoP proof (RFC 9449) itself with Debian's python3-cryptography, and connects with
Debian's python3-websockets 10.4, so nothing in it shares code with the gateway or its SDK.

The device makes a P-256 key, gets a DPoP-bound access token from /oauth/token with
client_secret_basic (with the nonce from the server's DPoP-Nonce challenge), opens wss://localhost:<port>/ws
with `Authorization: DPoP <token>` and a `DPoP` proof header, and reads the welcome frame. Then it
sends the same proof again, which the gateway must refuse as a replay, and the token as a bearer
token, which it must refuse too.

Usage: dpop_client.py --port PORT --ca-file CA_PEM --client-id ID
The client secret comes from the PORTCULLIS_CLIENT_SECRET environment variable. The script prints
one JSON object on one line and exits 0; an unexpected failure raises and exits 1.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import websockets
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

TIMEOUT_SECONDS = 10


def parse_args():
    parser = argparse.ArgumentParser(description="Portcullis DPoP device client over Python websockets.")
    parser.add_argument("--port", type=int, required=True, help="port of the server on localhost")
    parser.add_argument("--ca-file", required=True, help="PEM file of the CA that signed the server certificate")
    parser.add_argument("--client-id", required=True, help="client id of the registered device")
    return parser.parse_args()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value):
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def jwt_claims(token):
    """Decode the payload of a compact JWT without verifying it, because the gateway verifies it."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class ProofKey:
    """A P-256 key pair with its public JWK and RFC 7638 thumbprint."""

    def __init__(self):
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.private_key.public_key().public_numbers()
        self.jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
        # RFC 7638: the required members in lexicographic order, no white space.
        canonical = json.dumps({k: self.jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
        self.thumbprint = b64url(hashlib.sha256(canonical.encode("utf-8")).digest())

    def proof(self, htm, htu, access_token=None, nonce=None):
        """Sign a DPoP proof JWT with ES256 (RFC 7518 section 3.4: r and s, 32 bytes each)."""
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        claims = {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": int(time.time())}
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode("ascii")
        r, s = decode_dss_signature(self.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return f"{signing_input.decode('ascii')}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def post_token_request(url, context, headers, form):
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode("ascii"), headers=headers, method="POST")
    # An empty ProxyHandler ignores any *_proxy environment variable, so the request stays on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def request_dpop_token(base_url, context, key, client_id, client_secret):
    """Request a DPoP-bound client_credentials token; retry once with the nonce the server names."""
    url = f"{base_url}/oauth/token"
    pair = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(client_secret, safe='')}"
    nonce = None
    attempts = []
    for _ in range(2):
        headers = {
            "Authorization": "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii"),
            "Content-Type": "application/x-www-form-urlencoded",
            "DPoP": key.proof("POST", url, nonce=nonce),
        }
        status, response_headers, body = post_token_request(url, context, headers, {"grant_type": "client_credentials"})
        attempts.append({"status": status, "error": body.get("error")})
        if body.get("error") == "use_dpop_nonce" and response_headers.get("DPoP-Nonce"):
            nonce = response_headers["DPoP-Nonce"]
            continue
        return attempts, body
    raise RuntimeError("the server asked for a nonce twice")


async def try_connect(ws_url, context, headers):
    """Open the WebSocket; return the welcome frame, or the refused status and error code."""
    try:
        async with websockets.connect(ws_url, ssl=context, extra_headers=headers, open_timeout=TIMEOUT_SECONDS) as websocket:
            welcome = json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_SECONDS))
            return {"accepted": True, "welcome": welcome}
    except websockets.exceptions.InvalidStatusCode as error:
        return {"accepted": False, "status": error.status_code, "error": error.headers.get("X-Portcullis-Error")}


async def main():
    args = parse_args()
    context = ssl.create_default_context(cafile=args.ca_file)
    base_url = f"https://localhost:{args.port}"
    ws_url = f"wss://localhost:{args.port}/ws"
    # RFC 9449 section 4.2: htu is the target URI without query and fragment; for the handshake,
    # the https:// form of the WebSocket URL.
    htu = f"{base_url}/ws"
    key = ProofKey()

    attempts, token_response = request_dpop_token(base_url, context, key, args.client_id, os.environ["PORTCULLIS_CLIENT_SECRET"])
    access_token = token_response["access_token"]
    proof = key.proof("GET", htu, access_token=access_token)
    dpop_headers = {"Authorization": f"DPoP {access_token}", "DPoP": proof, "X-Client-Id": args.client_id}

    result = {
        "key_thumbprint": key.thumbprint,
        "token": {"attempts": attempts, "token_type": token_response.get("token_type"), "cnf": jwt_claims(access_token).get("cnf")},
        "connected": await try_connect(ws_url, context, dpop_headers),
        "replayed": await try_connect(ws_url, context, dpop_headers),
        "as_bearer": await try_connect(ws_url, context, {"Authorization": f"Bearer {access_token}", "X-Client-Id": args.client_id}),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
