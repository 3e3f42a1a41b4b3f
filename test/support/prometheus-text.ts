// A strict parser of the Prometheus text exposition format 0.0.4, for tests of GET /metrics.
// prom-client writes the format but ships no parser. This one throws on anything the format does
// not allow, so a test fails when the scrape is malformed, not only when a value is wrong.

/** One sample line: metric name, labels and value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A metric family: its `# TYPE`, `# HELP` and samples. */
export interface MetricFamily {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string | null;
  samples: Sample[];
}

const metricNamePattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelNamePattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const types = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function fail(lineNumber: number, problem: string): never {
  throw new Error(`metrics line ${lineNumber}: ${problem}`);
}

// Values are what Go's strconv.ParseFloat accepts, as Prometheus reads them: its special values are
// case-insensitive, and prom-client 15 writes NaN as `Nan`.
function parseValue(text: string, lineNumber: number): number {
  const special = /^([-+]?)(inf|infinity)$/i.exec(text);
  if (special) {
    return special[1] === '-' ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  if (/^nan$/i.test(text)) {
    return Number.NaN;
  }
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
    fail(lineNumber, `invalid value ${JSON.stringify(text)}`);
  }
  return Number(text);
}

// Reads `{name="value",...}` starting at `start`; returns the labels and the index after `}`.
function parseLabels(line: string, start: number, lineNumber: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let index = start + 1;
  while (line[index] !== '}') {
    const equals = line.indexOf('=', index);
    if (equals === -1) {
      fail(lineNumber, 'label without "="');
    }
    const name = line.slice(index, equals);
    if (!labelNamePattern.test(name) || Object.hasOwn(labels, name)) {
      fail(lineNumber, `invalid or repeated label name ${JSON.stringify(name)}`);
    }
    if (line[equals + 1] !== '"') {
      fail(lineNumber, `label ${name} value is not quoted`);
    }

    let value = '';
    let cursor = equals + 2;
    for (; cursor < line.length && line[cursor] !== '"'; cursor += 1) {
      if (line[cursor] !== '\\') {
        value += line[cursor];
        continue;
      }
      const escaped = line[cursor + 1];
      if (escaped !== '\\' && escaped !== '"' && escaped !== 'n') {
        fail(lineNumber, `invalid escape in label ${name}`);
      }
      value += escaped === 'n' ? '\n' : escaped;
      cursor += 1;
    }
    if (cursor >= line.length) {
      fail(lineNumber, `unterminated value of label ${name}`);
    }
    labels[name] = value;

    index = cursor + 1;
    if (line[index] === ',') {
      index += 1;
    } else if (line[index] !== '}') {
      fail(lineNumber, 'expected "," or "}" after a label');
    }
  }
  return { labels, end: index + 1 };
}

function parseSample(line: string, lineNumber: number): Sample {
  const nameEnd = line.search(/[{ ]/);
  if (nameEnd <= 0) {
    fail(lineNumber, 'sample without a value');
  }
  const name = line.slice(0, nameEnd);
  if (!metricNamePattern.test(name)) {
    fail(lineNumber, `invalid metric name ${JSON.stringify(name)}`);
  }

  const { labels, end } = line[nameEnd] === '{' ? parseLabels(line, nameEnd, lineNumber) : { labels: {}, end: nameEnd };
  if (line[end] !== ' ') {
    fail(lineNumber, 'expected a space before the value');
  }
  const fields = line.slice(end + 1).split(' ');
  if (fields.length > 2 || (fields.length === 2 && !/^-?\d+$/.test(fields[1]))) {
    fail(lineNumber, 'expected a value and at most an integer timestamp');
  }
  return { name, labels, value: parseValue(fields[0], lineNumber) };
}

// The family a sample belongs to: histogram and summary samples carry a suffix.
function familyNameOf(sample: Sample, families: Map<string, MetricFamily>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    const base = sample.name.slice(0, -suffix.length);
    if (sample.name.endsWith(suffix) && ['histogram', 'summary'].includes(families.get(base)?.type ?? '')) {
      return base;
    }
  }
  return sample.name;
}

function seriesKey(sample: Sample): string {
  return `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
}

/**
 * Parses a scrape into families by name. Throws on a malformed line, a `# TYPE` after its samples or
 * repeated, a family whose samples are not together, a repeated series, or a histogram whose buckets
 * are not cumulative or whose `+Inf` bucket differs from `_count`.
 */
export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  if (text.length > 0 && !text.endsWith('\n')) {
    fail(0, 'the exposition does not end with a newline');
  }

  const families = new Map<string, MetricFamily>();
  const seenSeries = new Set<string>();
  const finished = new Set<string>();
  let current: string | null = null;
  const enter = (name: string, lineNumber: number): MetricFamily => {
    if (current !== name) {
      if (finished.has(name)) {
        fail(lineNumber, `samples of ${name} are not together`);
      }
      if (current !== null) {
        finished.add(current);
      }
      current = name;
    }
    let family = families.get(name);
    if (!family) {
      family = { name, type: 'untyped', help: null, samples: [] };
      families.set(name, family);
    }
    return family;
  };

  text.split('\n').forEach((line, index) => {
    const lineNumber = index + 1;
    if (line === '') {
      return;
    }

    const directive = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (directive) {
      const [, keyword, name, rest] = directive;
      if (!metricNamePattern.test(name)) {
        fail(lineNumber, `invalid metric name ${JSON.stringify(name)}`);
      }
      const family = enter(name, lineNumber);
      if (keyword === 'HELP') {
        family.help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
        return;
      }
      if (!types.has(rest) || family.samples.length > 0 || family.type !== 'untyped') {
        fail(lineNumber, `invalid, late or repeated TYPE for ${name}`);
      }
      family.type = rest as MetricFamily['type'];
      return;
    }
    if (line.startsWith('#')) {
      return;
    }

    const sample = parseSample(line, lineNumber);
    const key = seriesKey(sample);
    if (seenSeries.has(key)) {
      fail(lineNumber, `repeated series ${key}`);
    }
    seenSeries.add(key);
    enter(familyNameOf(sample, families), lineNumber).samples.push(sample);
  });

  for (const family of families.values()) {
    if (family.type === 'histogram') {
      checkHistogram(family);
    }
  }
  return families;
}

function checkHistogram(family: MetricFamily): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (sample.name.endsWith('_bucket')) {
      group.buckets.push([le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), sample.value]);
    } else if (sample.name.endsWith('_count')) {
      group.count = sample.value;
    }
  }

  for (const [key, group] of groups) {
    const last = group.buckets.at(-1);
    if (!last || last[0] !== Number.POSITIVE_INFINITY || last[1] !== group.count) {
      throw new Error(`histogram ${family.name}${key} lacks a +Inf bucket equal to _count`);
    }
    for (let index = 1; index < group.buckets.length; index += 1) {
      const [previousBound, previousCount] = group.buckets[index - 1];
      const [bound, count] = group.buckets[index];
      if (bound <= previousBound || count < previousCount) {
        throw new Error(`histogram ${family.name}${key} buckets are not in order or not cumulative`);
      }
    }
  }
}

/**
 * Returns the value of the one sample named `name` whose labels include `labels`, or 0 when there is
 * none (a counter not yet incremented is absent). Throws when several samples match.
 */
export function sampleValue(families: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}): number {
  const matches = [...families.values()]
    .flatMap((family) => family.samples)
    .filter((sample) => sample.name === name && Object.entries(labels).every(([label, value]) => sample.labels[label] === value));
  if (matches.length > 1) {
    throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`);
  }
  return matches[0]?.value ?? 0;
}
