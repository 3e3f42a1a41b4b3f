// `npm run fuzz [-- --seed N] [--runs N] [--property NAME] [--path PATH]`
//
// Runs the fuzz properties of test/attacks/fuzz with far more inputs than `npm test` does, against
// one server on loopback. The same seed and run count give the same inputs, so a failure repeats.
import { parseArgs } from 'node:util';

import fc from 'fast-check';

import { frameContext, frameOutcomeProperty, frameParserProperty } from '../test/attacks/fuzz/frame-properties.ts';
import { startFuzzTarget, type FuzzTarget } from '../test/attacks/fuzz/fuzz-target.ts';
import { guardParsersProperty } from '../test/attacks/fuzz/guard-properties.ts';
import { assertServerServes, genuineHandshakeProperty, handshakeOutcomeProperty } from '../test/attacks/fuzz/handshake-properties.ts';
import { OutcomeTally } from '../test/attacks/fuzz/outcome-tally.ts';

/** One property of the run; `runsPerUnit` times `--runs` gives its number of inputs. */
interface FuzzProperty {
  name: string;
  runsPerUnit: number;
  build(target: FuzzTarget, tally: OutcomeTally): fc.IRawProperty<any>;
}

const properties: FuzzProperty[] = [
  { name: 'guard-parsers', runsPerUnit: 10, build: () => guardParsersProperty() },
  { name: 'protocol-parser', runsPerUnit: 5, build: (target) => frameParserProperty(frameContext(target)) },
  { name: 'handshake-outcome', runsPerUnit: 1, build: (target, tally) => handshakeOutcomeProperty({ target, tally }) },
  { name: 'genuine-handshake', runsPerUnit: 0.25, build: (target, tally) => genuineHandshakeProperty({ target, tally }) },
  { name: 'frame-outcome', runsPerUnit: 1, build: (target, tally) => frameOutcomeProperty({ target, tally }) },
];

const defaultSeed = 20_240_607;
const defaultRuns = 10_000;
const progressIntervalMs = 10_000;

const usage = `npm run fuzz -- [--seed N] [--runs N] [--property NAME] [--path PATH]

  --seed N         seed of every property (default ${defaultSeed}); the same seed gives the same inputs
  --runs N         inputs of each property over TLS (default ${defaultRuns}); the in-process properties
                   get ${properties[0].runsPerUnit} and ${properties[1].runsPerUnit} times as many
  --property NAME  run only this property; one of ${properties.map((property) => property.name).join(', ')}
  --path PATH      with --property and --seed, replay the counterexample at this path of a failed run`;

interface CommandLine {
  seed: number;
  runs: number;
  only: FuzzProperty | null;
  path: string | undefined;
}

function parseCommandLine(): CommandLine {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: String(defaultSeed) },
      runs: { type: 'string', default: String(defaultRuns) },
      property: { type: 'string' },
      path: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }

  const seed = Number(values.seed);
  const runs = Number(values.runs);
  const only = values.property === undefined ? null : properties.find((property) => property.name === values.property);
  const problems = [
    Number.isSafeInteger(seed) ? null : `--seed must be an integer, not ${values.seed}`,
    Number.isSafeInteger(runs) && runs > 0 ? null : `--runs must be a positive integer, not ${values.runs}`,
    only === undefined ? `--property must be one of ${properties.map((property) => property.name).join(', ')}, not ${values.property}` : null,
    values.path !== undefined && only === null ? '--path needs --property, because a path belongs to one property' : null,
  ].filter((problem): problem is string => problem !== null);
  if (problems.length > 0) {
    console.error(`${problems.join('\n')}\n\n${usage}`);
    process.exit(2);
  }
  return { seed, runs, only: only ?? null, path: values.path };
}

/** The figures of one property's run. */
interface PropertySummary {
  name: string;
  runs: number;
  inputs: number;
  seconds: number;
  tally: OutcomeTally;
  failure: string | null;
}

async function runProperty(property: FuzzProperty, target: FuzzTarget, commandLine: CommandLine): Promise<PropertySummary> {
  const tally = new OutcomeTally();
  const numRuns = Math.max(1, Math.round(commandLine.runs * property.runsPerUnit));
  let inputs = 0;
  const started = performance.now();
  const progress = setInterval(() => {
    const seconds = (performance.now() - started) / 1000;
    console.log(`  ${property.name}: ${inputs} of ${numRuns} inputs, ${(inputs / seconds).toFixed(1)} per second`);
  }, progressIntervalMs);

  let details: fc.RunDetails<unknown>;
  try {
    details = await fc.check(property.build(target, tally), {
      seed: commandLine.seed,
      numRuns,
      path: commandLine.path,
      includeErrorInReport: true,
      plugins: [fc.afterEach(() => { inputs += 1; })],
    });
  } finally {
    clearInterval(progress);
  }

  const seconds = (performance.now() - started) / 1000;
  return { name: property.name, runs: details.numRuns, inputs, seconds, tally, failure: describeFailure(property, details) };
}

function describeFailure(property: FuzzProperty, details: fc.RunDetails<unknown>): string | null {
  if (!details.failed) {
    return null;
  }
  if (details.counterexample === null) {
    return `${property.name} failed without a counterexample (interrupted: ${details.interrupted})`;
  }

  const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  const example = fc.stringify(details.counterexample);
  return [
    `${property.name} failed after ${details.numRuns} runs and ${details.numShrinks} shrinks: ${error}`,
    `  counterexample: ${example.length > 2000 ? `${example.slice(0, 2000)}...` : example}`,
    `  replay: npm run fuzz -- --property ${property.name} --seed ${details.seed} --path "${details.counterexamplePath}"`,
  ].join('\n');
}

function printSummary(summaries: PropertySummary[]): void {
  console.log('\nproperty             runs     inputs   seconds  inputs/s  result');
  for (const summary of summaries) {
    const rate = summary.seconds > 0 ? summary.inputs / summary.seconds : 0;
    const row = [
      summary.name.padEnd(20),
      String(summary.runs).padStart(6),
      String(summary.inputs).padStart(10),
      summary.seconds.toFixed(1).padStart(9),
      rate.toFixed(1).padStart(9),
      summary.failure === null ? '  passed' : '  FAILED',
    ];
    console.log(row.join(' '));
  }

  for (const summary of summaries.filter((entry) => entry.tally.total > 0)) {
    console.log(`\nOutcomes of ${summary.name}:`);
    for (const [label, count] of summary.tally.entries()) {
      console.log(`  ${String(count).padStart(7)}  ${label}`);
    }
  }
}

async function main(): Promise<number> {
  const commandLine = parseCommandLine();
  // An exception that escapes the server's handlers would end a real server, so it fails the run.
  const escaped: string[] = [];
  process.on('uncaughtException', (error) => escaped.push(`uncaught exception: ${error.stack ?? String(error)}`));
  process.on('unhandledRejection', (reason) => escaped.push(`unhandled rejection: ${String(reason)}`));

  const selected = commandLine.only ? [commandLine.only] : properties;
  console.log(`Fuzzing with seed ${commandLine.seed} and --runs ${commandLine.runs}: ${selected.map((property) => property.name).join(', ')}`);
  const target = await startFuzzTarget();
  const summaries: PropertySummary[] = [];
  const failures: string[] = [];
  try {
    for (const property of selected) {
      console.log(`${property.name}: started`);
      const summary = await runProperty(property, target, commandLine);
      summaries.push(summary);
      console.log(`${property.name}: ${summary.failure === null ? 'passed' : 'FAILED'} after ${summary.inputs} inputs in ${summary.seconds.toFixed(1)} s`);
      if (summary.failure !== null) {
        failures.push(summary.failure);
      }
    }
    await assertServerServes(target).catch((error: Error) => failures.push(`after the run: ${error.message}`));
  } finally {
    await target.close();
  }

  printSummary(summaries);
  failures.push(...escaped);
  if (failures.length > 0) {
    console.log(`\n${failures.length} failure(s):\n${failures.join('\n\n')}`);
    return 1;
  }
  console.log('\nNo failures.');
  return 0;
}

process.exitCode = await main();
