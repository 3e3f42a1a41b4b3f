// A DPoP device written in Python, which Portcullis did not write: Debian's python3-cryptography
// signs its proofs and python3-websockets 10.4 opens the socket. It gets a DPoP-bound token after a
// nonce challenge, connects with `Authorization: DPoP` and a proof, and is refused when it replays
// the proof or presents the bound token as a bearer token.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { runPythonDevice } from '../support/python-device.ts';
import { addDevice, startTestServer, type TestServer } from '../support/server.ts';


interface ConnectOutcome {
  accepted: boolean;
  welcome?: { type: string; client_id: string; sub: string };
  status?: number;
  error?: string | null;
}

/** The one JSON line `dpop_client.py` prints. */
interface PythonDpopResult {
  key_thumbprint: string;
  token: { attempts: { status: number; error: string | null }[]; token_type: string; cnf: { jkt?: string } | null };
  connected: ConnectOutcome;
  replayed: ConnectOutcome;
  as_bearer: ConnectOutcome;
}


let server: TestServer;
let device: { client_id: string; client_secret: string };
let result: PythonDpopResult;

before(async () => {
  server = await startTestServer();
  device = await addDevice(server, 'python-dpop-device');
  const run = await runPythonDevice('dpop_client.py', server, device);
  assert.equal(run.code, 0, `dpop_client.py failed:\n${run.stderr}`);
  result = JSON.parse(run.stdout.trim()) as PythonDpopResult;
});

after(async () => {
  await server.close();
});

test('python client gets a bound token', () => {
  assert.deepEqual(result.token.attempts, [{ status: 400, error: 'use_dpop_nonce' }, { status: 200, error: null }]);
  assert.equal(result.token.token_type, 'DPoP');
  assert.deepEqual(result.token.cnf, { jkt: result.key_thumbprint });
});

test('python client connects with its own DPoP proof', () => {
  assert.equal(result.connected.accepted, true, `refused: ${result.connected.status} ${result.connected.error}`);
  assert.equal(result.connected.welcome?.type, 'welcome');
  assert.equal(result.connected.welcome?.client_id, device.client_id);
});

test('the same proof a second time is refused as a replay', () => {
  assert.deepEqual(result.replayed, { accepted: false, status: 401, error: 'invalid_dpop_proof' });

  const rejections = server.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.event === 'handshake.rejected');
  assert.ok(rejections.some((entry) => entry.code === 'invalid_dpop_proof' && entry.detail === 'replayed'));
});

test('the bound token presented as a bearer token is refused', () => {
  assert.deepEqual(result.as_bearer, { accepted: false, status: 401, error: 'token_invalid' });
});
