// The strict exposition-format parser that the metrics tests rely on must reject what Prometheus
// rejects, or a malformed scrape would pass them.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parsePrometheusText, sampleValue } from './prometheus-text.ts';

const valid = `# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{code="200",path="a\\"b"} 3
requests_total{code="500"} 1
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 1
latency_seconds_bucket{le="1"} 2
latency_seconds_bucket{le="+Inf"} 2
latency_seconds_sum 0.6
latency_seconds_count 2
lag_seconds Nan
`;

test('parses families, labels and values', () => {
  const families = parsePrometheusText(valid);

  assert.equal(families.get('requests_total')?.type, 'counter');
  assert.equal(families.get('requests_total')?.help, 'Requests.');
  assert.equal(sampleValue(families, 'requests_total', { code: '200' }), 3);
  assert.equal(families.get('requests_total')?.samples[0].labels.path, 'a"b');
  assert.equal(sampleValue(families, 'latency_seconds_count'), 2);
  assert.equal(families.get('latency_seconds')?.samples.length, 5);
  assert.ok(Number.isNaN(sampleValue(families, 'lag_seconds')));
  assert.equal(sampleValue(families, 'absent_total'), 0);
});

const malformed: Record<string, string> = {
  'missing final newline': 'a 1',
  'unquoted label value': 'a{b=c} 1\n',
  'unterminated label value': 'a{b="c} 1\n',
  'invalid escape': 'a{b="\\x"} 1\n',
  'repeated label': 'a{b="1",b="2"} 1\n',
  'invalid value': 'a 1x\n',
  'invalid metric name': '1a 1\n',
  'late TYPE': 'a 1\n# TYPE a counter\n',
  'repeated series': 'a{b="1"} 1\na{b="1"} 2\n',
  'split family': 'a 1\nb 1\na{c="1"} 1\n',
  'unknown type': '# TYPE a meter\na 1\n',
  'non-cumulative histogram': '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\n',
  'histogram without +Inf': '# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\nh_sum 1\n',
};

for (const [name, text] of Object.entries(malformed)) {
  test(`rejects ${name}`, () => {
    assert.throws(() => parsePrometheusText(text), /metrics line|histogram/);
  });
}

test('sampleValue rejects ambiguous match', () => {
  assert.throws(() => sampleValue(parsePrometheusText(valid), 'requests_total'), /2 samples/);
});
