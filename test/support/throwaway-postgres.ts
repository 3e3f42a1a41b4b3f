import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { freePort } from './server.ts';

const run = promisify(execFile);

/** Directory of Debian's PostgreSQL server packages, one `<major>/bin` per installed version. */
const debianPostgresRoot = '/usr/lib/postgresql';

/** Seconds `pg_ctl` waits for the server to start or stop. It only stops a hung test. */
const pgCtlWaitSeconds = 30;

/** Returns the `bin` directory of the newest PostgreSQL server installed from Debian's packages. */
function findServerBinaries(): string {
  const versions = fs.existsSync(debianPostgresRoot)
    ? fs.readdirSync(debianPostgresRoot).filter((name) => fs.existsSync(path.join(debianPostgresRoot, name, 'bin', 'pg_ctl')))
    : [];
  if (versions.length === 0) {
    throw new Error(`No PostgreSQL server binaries under ${debianPostgresRoot}/<version>/bin; install them with: apt-get install postgresql`);
  }
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  return path.join(debianPostgresRoot, newest, 'bin');
}

/**
 * A PostgreSQL server of one test alone: a fresh cluster in a temporary directory, listening on
 * 127.0.0.1 at a free port with trust authentication. `stop` and `start` simulate an outage; the
 * port and the data stay the same. initdb refuses to run as root, so as root the cluster belongs to
 * the `postgres` system user and every command runs through `runuser`.
 */
export class ThrowawayPostgresServer {
  readonly port: number;
  private readonly directory: string;
  private readonly binaries: string;
  private running = false;

  private constructor(port: number, binaries: string) {
    this.port = port;
    this.binaries = binaries;
    this.directory = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-postgres-'));
  }

  /** Creates a cluster and starts the server on a port that was free a moment ago. */
  static async start(): Promise<ThrowawayPostgresServer> {
    const server = new ThrowawayPostgresServer(await freePort(), findServerBinaries());
    try {
      await server.initialize();
      await server.start();
    } catch (error) {
      await server.destroy();
      throw error;
    }
    return server;
  }

  /** URL of the cluster's `postgres` database as its superuser, without a password. */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private get dataDir(): string {
    return path.join(this.directory, 'data');
  }

  /** Starts the server on the same port and data directory and resolves once it accepts connections. */
  async start(): Promise<void> {
    const serverOptions = [
      '-c listen_addresses=127.0.0.1',
      `-c port=${this.port}`,
      // The Unix socket goes to this test's directory instead of the system's /var/run/postgresql.
      `-c unix_socket_directories=${this.directory}`,
      // A throwaway cluster need not survive a crash of the machine.
      '-c fsync=off',
    ].join(' ');
    await this.runAsOwner('pg_ctl', ['start', '--wait', `--timeout=${pgCtlWaitSeconds}`, '-D', this.dataDir, '-l', path.join(this.directory, 'server.log'), '-o', serverOptions]);
    this.running = true;
  }

  /** Stops the server with the fast shutdown mode, which ends every open session at once. */
  async stop(): Promise<void> {
    if (!this.running) {
      return;
    }
    await this.runAsOwner('pg_ctl', ['stop', '--wait', `--timeout=${pgCtlWaitSeconds}`, '-m', 'fast', '-D', this.dataDir]);
    this.running = false;
  }

  /** Stops the server if it runs and removes its directory. */
  async destroy(): Promise<void> {
    try {
      await this.stop();
    } finally {
      fs.rmSync(this.directory, { recursive: true, force: true });
    }
  }

  private async initialize(): Promise<void> {
    if (isRoot()) {
      const owner = await postgresUser();
      fs.chownSync(this.directory, owner.uid, owner.gid);
    }
    await this.runAsOwner('initdb', ['-D', this.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  }

  private async runAsOwner(program: string, args: string[]): Promise<void> {
    const binary = path.join(this.binaries, program);
    const [command, commandArgs] = isRoot() ? ['runuser', ['-u', 'postgres', '--', binary, ...args]] : [binary, args];
    try {
      await run(command, commandArgs);
    } catch (error) {
      const { stderr, stdout } = error as { stderr?: string; stdout?: string };
      throw new Error(`${program} ${args[0]} failed: ${stderr || stdout || (error as Error).message}`, { cause: error });
    }
  }
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  try {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    return { uid, gid };
  } catch (error) {
    throw new Error('Run as root, the test needs the postgres system user to own its PostgreSQL cluster; install the postgresql package or run the test as another user.', { cause: error });
  }
}
