#!/usr/bin/env node
// Entry point: registers tsx so the TypeScript sources run as they are, then hands over to the CLI.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const exitCode = await main(process.argv.slice(2));
// Pooled connections and timers of libraries may outlive a finished command, so the process exits
// explicitly, but only after piped output is flushed: process.exit drops pending pipe writes.
process.stdout.write('', () => process.stderr.write('', () => process.exit(exitCode)));
