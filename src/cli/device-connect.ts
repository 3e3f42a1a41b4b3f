import fs from 'node:fs';
import path from 'node:path';

import { DeviceClient, type StateChange } from '../client/device.ts';
import { optionSources, parseOptionArgs, resolveOptions } from '../config/load.ts';
import { CommandError, printLine } from './output.ts';
import { readPasswordFromStdin } from './password-input.ts';

/** Usage of `portcullis device`. */
export const deviceUsage = `portcullis device connect <client-id> --secret-stdin [--url wss://HOST/ws] [--issuer https://HOST] [--ca FILE] [--dpop] [--once]`;

/** The endpoint, issuer and CA a device connects with, after defaults. */
interface Target {
  url: string;
  issuer: string;
  ca: string | undefined;
}

function readCa(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new CommandError('ca_unreadable', `--ca ${file} could not be read (${(error as NodeJS.ErrnoException).code}); check the path.`, 2);
  }
}

// Server settings that make a gateway trust an external issuer. They mean nothing to a device.
const externalIssuerOptions = new Set<string>(['role', 'issuer', 'jwksUrl', 'issuerCaFile', 'audience', 'tokenAlgorithms', 'acceptJwtType', 'clientIdClaim', 'scopeClaim', 'tokenIdClaim']);
const externalIssuerVariables = new Set(optionSources.filter((source) => externalIssuerOptions.has(source.option)).map((source) => source.env));

/**
 * Defaults come from the server options: the public URL, and `<dataDir>/ca.pem` when it exists.
 * `--issuer` here names the device's token issuer. The server's settings for trusting an external
 * issuer are left out, because they are valid only together with `--role gateway`.
 */
function resolveTarget(values: Record<string, unknown>): Target {
  const { issuer: deviceIssuer, ...serverValues } = values;
  const serverEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !externalIssuerVariables.has(name)));
  const options = resolveOptions(serverValues, serverEnv);
  const issuer = typeof deviceIssuer === 'string' ? deviceIssuer : process.env.PORTCULLIS_ISSUER || options.publicUrl;
  const defaultUrl = new URL('/ws', options.publicUrl);
  defaultUrl.protocol = 'wss:';
  const url = typeof values.url === 'string' ? values.url : defaultUrl.href;
  if (!url.startsWith('wss://')) {
    throw new CommandError('tls_required', `--url must start with wss://, got ${JSON.stringify(url)}.`, 2);
  }

  const defaultCa = path.join(options.dataDir, 'ca.pem');
  const caFile = typeof values.ca === 'string' ? values.ca : fs.existsSync(defaultCa) ? defaultCa : null;
  return { url, issuer, ca: caFile ? readCa(caFile) : undefined };
}

// One frame per line: a frame that contains a line break is printed as a JSON string.
function frameLine(text: string): string {
  return /[\r\n]/.test(text) ? JSON.stringify(text) : text;
}

function describe(change: StateChange): string {
  const details = [
    change.reason,
    change.closeCode === undefined ? null : `close ${change.closeCode}`,
    change.status === undefined ? null : `status ${change.status}`,
  ].filter(Boolean).join(', ');
  const delay = change.retryInMs === undefined ? '' : ` in ${change.retryInMs} ms`;
  return `portcullis device: ${change.state} (${details})${delay}`;
}

/**
 * Connects as a device and prints every received frame as one line on standard output, with state
 * changes on standard error, until SIGINT or SIGTERM. With `once` it stops at the welcome frame, or
 * fails at the first failed attempt instead of retrying, because it serves as a check.
 */
async function connectDevice(clientId: string, secret: string, target: Target, flags: { once: boolean; dpop: boolean }): Promise<void> {
  const { once } = flags;
  let failedAttempt: StateChange | null = null;
  let finished!: (stop: StateChange) => void;
  const stopped = new Promise<StateChange>((resolve) => {
    finished = resolve;
  });

  const client = new DeviceClient({
    url: target.url,
    issuer: target.issuer,
    clientId,
    credentials: { clientSecret: secret },
    // A key made for this run only: the command keeps no refresh token that would outlive it.
    dpop: flags.dpop ? true : undefined,
    ca: target.ca,
    onFrame: (text) => printLine(frameLine(text)),
    onStateChange: (change) => {
      process.stderr.write(`${describe(change)}\n`);
      if (change.state === 'stopped') {
        finished(change);
      }
      if (once && change.state === 'open') {
        void client.close();
      }
      if (once && change.state === 'reconnecting') {
        failedAttempt = change;
        void client.close();
      }
    },
  });

  const interrupt = () => void client.close();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    client.connect();
    const stop = await stopped;
    await client.close();
    if (failedAttempt) {
      const reason = (failedAttempt as StateChange).reason;
      throw new CommandError(reason, `the first attempt failed: ${reason}; check --url, --issuer and --ca against the server.`);
    }
    if (stop.reason !== 'closed') {
      throw new CommandError(stop.reason, `stopped for good: ${stop.reason}.`);
    }
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
}

/** Runs `portcullis device connect`; the client secret is read from standard input. */
export async function runDeviceCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseOptionArgs(argv, {
    'secret-stdin': { type: 'boolean' },
    url: { type: 'string' },
    issuer: { type: 'string' },
    ca: { type: 'string' },
    once: { type: 'boolean' },
    dpop: { type: 'boolean' },
  });
  const [action, clientId] = positionals;
  if (action !== 'connect') {
    throw new CommandError('unknown_command', `Unknown device command "${action ?? ''}".\n${deviceUsage}`, 2);
  }
  if (!clientId) {
    throw new CommandError('invalid_client_id', `Give the device's client id.\n${deviceUsage}`, 2);
  }
  // A secret in argv would be visible to every local user through the process list.
  if (!values['secret-stdin']) {
    throw new CommandError('secret_required', `Pipe the client secret and pass --secret-stdin.\n${deviceUsage}`, 2);
  }

  const target = resolveTarget(values);
  const secret = await readPasswordFromStdin();
  if (secret === '') {
    throw new CommandError('secret_required', 'Standard input held no client secret.', 2);
  }
  await connectDevice(clientId, secret, target, { once: Boolean(values.once), dpop: Boolean(values.dpop) });
}
