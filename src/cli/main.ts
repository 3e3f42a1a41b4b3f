import { OptionsError } from '../config/options.ts';
import { optionSources } from '../config/load.ts';
import { PortcullisError } from '../errors.ts';
import { auditUsage, runAudit } from './audit.ts';
import { deviceUsage, runDeviceCommand } from './device-connect.ts';
import { devicesUsage, runDevices } from './devices.ts';
import { keysUsage, runKeys } from './keys.ts';
import { CommandError } from './output.ts';
import { publishUsage, runPublish } from './publish.ts';
import { runSessions, sessionsUsage } from './sessions.ts';
import { runStart, startUsage } from './start.ts';
import { runUsers, usersUsage } from './users.ts';

const usage = `Portcullis: a secure WebSocket gateway with its own OAuth 2.0 authorization server.

Usage:
${startUsage}
${usersUsage}
${devicesUsage}
${deviceUsage}
${keysUsage}
${sessionsUsage}
${publishUsage}
${auditUsage}

Every command takes --data-dir DIR (default ./.portcullis), --database-url URL (PostgreSQL
instead of SQLite in the data directory) and --config FILE.
Environment variables: ${optionSources.map((source) => source.env).join(', ')}, PORTCULLIS_CONFIG.
Exit codes: 0 success, 1 failure, 2 invalid usage or configuration.`;

const commands: Record<string, (argv: string[]) => Promise<void>> = {
  start: runStart,
  users: runUsers,
  devices: runDevices,
  device: runDeviceCommand,
  keys: runKeys,
  sessions: runSessions,
  publish: runPublish,
  audit: runAudit,
};

/** Runs one CLI command and returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(`${usage}\n`);
    return name ? 0 : 2;
  }

  const command = commands[name];
  if (!command) {
    process.stderr.write(`portcullis: unknown command "${name}".\n\n${usage}\n`);
    return 2;
  }

  try {
    await command(rest);
    return 0;
  } catch (error) {
    if (error instanceof OptionsError || error instanceof CommandError) {
      process.stderr.write(`portcullis ${name}: ${error.message}\n`);
      return error.exitCode;
    }
    process.stderr.write(`portcullis ${name}: failed: ${describeFailure(error)}\n`);
    return 1;
  }
}

// A catalogue error's message is the fixed public text, such as "A service this request depends on
// is unreachable", so the operator also gets the error behind it (pg's "connect ECONNREFUSED ...").
function describeFailure(error: unknown): string {
  const message = (error as Error).message;
  if (error instanceof PortcullisError && error.cause instanceof Error) {
    return `${message} (${error.cause.message})`;
  }
  return message;
}
