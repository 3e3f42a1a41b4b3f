// `npm run bench [-- --quick] [--out DIR] [--scenario NAME]... [--system NAME]...`
import path from 'node:path';
import { parseArgs } from 'node:util';

import { fullSizes, quickSizes, scenarios, systems, type ScenarioId, type SystemId } from './config.ts';
import { runBench } from './harness.ts';
import { repositoryRoot, stopAllChildren } from './processes.ts';
import { renderMarkdown, writeResults } from './report.ts';

const usage = `npm run bench -- [--quick] [--rounds N] [--out DIR] [--scenario NAME]... [--system NAME]...

  --quick          every scenario at small sizes (about three minutes on two cores)
  --rounds N       run every scenario N times on each system and report the medians (default 1;
                   an odd number gives a true median)
  --out DIR        where the results go (default bench/results)
  --scenario NAME  run only this scenario; one of ${scenarios.join(', ')}
  --system NAME    run only this system; one of ${systems.join(', ')}`;

function parseCommandLine(): { quick: boolean; rounds: number; out: string; scenarios?: ScenarioId[]; systems?: SystemId[] } {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string', default: '1' },
      out: { type: 'string', default: path.join(repositoryRoot, 'bench/results') },
      scenario: { type: 'string', multiple: true },
      system: { type: 'string', multiple: true },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }

  const unknownScenario = values.scenario?.find((name) => !(scenarios as readonly string[]).includes(name));
  const unknownSystem = values.system?.find((name) => !(systems as readonly string[]).includes(name));
  if (unknownScenario !== undefined || unknownSystem !== undefined) {
    process.stderr.write(`Unknown ${unknownScenario !== undefined ? `scenario "${unknownScenario}"` : `system "${unknownSystem}"`}.\n${usage}\n`);
    process.exit(2);
  }
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 9) {
    process.stderr.write(`--rounds must be a whole number from 1 to 9, got "${values.rounds}".\n${usage}\n`);
    process.exit(2);
  }
  return { quick: values.quick, rounds, out: values.out, scenarios: values.scenario as ScenarioId[] | undefined, systems: values.system as SystemId[] | undefined };
}

const options = parseCommandLine();

// Ctrl-C reaches the children too, since they share the terminal's process group. This handler
// stops the harness itself once they are gone.
process.once('SIGINT', () => {
  process.stderr.write('[bench] interrupted; stopping every server and load process\n');
  void stopAllChildren().finally(() => process.exit(130));
});

const run = await runBench({
  mode: options.quick ? 'quick' : 'full',
  sizes: options.quick ? quickSizes : fullSizes,
  rounds: options.rounds,
  scenarios: options.scenarios,
  systems: options.systems,
});
const files = writeResults(run, options.out);
process.stdout.write(renderMarkdown(run));
process.stderr.write(`[bench] wrote ${path.relative(process.cwd(), files.jsonFile)} and ${path.relative(process.cwd(), files.markdownFile)} in ${Math.round(run.durationMs / 1_000)} s\n`);
process.exit(run.failures.length === 0 ? 0 : 1);
