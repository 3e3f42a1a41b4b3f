// Draws the console chart as an inline SVG: one line for live connections and one for rejected
// handshakes, one point per minute. Presentation attributes are used, because the
// Content-Security-Policy blocks style attributes.
const svgNamespace = 'http://www.w3.org/2000/svg';
const width = 720;
const height = 200;
const margin = { top: 12, right: 12, bottom: 24, left: 40 };
const colors = { connections: '#2456a6', rejections: '#c62828' };

function svgElement(name, attributes, text) {
  const element = document.createElementNS(svgNamespace, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  if (text !== undefined) {
    element.textContent = text;
  }
  return element;
}

function seriesLine(points, field, scale) {
  // Minutes without a sample (before the server started) leave a gap rather than a false zero.
  const segments = [];
  let current = [];
  points.forEach((point, index) => {
    if (point[field] === null) {
      current = [];
      return;
    }
    if (current.length === 0) {
      segments.push(current);
    }
    current.push(`${scale.x(index).toFixed(1)},${scale.y(point[field]).toFixed(1)}`);
  });
  return segments.map((segment) => svgElement('polyline', { points: segment.join(' '), fill: 'none', stroke: colors[field], 'stroke-width': 2, class: `line-${field}` }));
}

// A dot per sampled minute keeps a single point visible, which a one-point line is not.
function seriesDots(points, field, scale) {
  return points.flatMap((point, index) => point[field] === null
    ? []
    : [svgElement('circle', { cx: scale.x(index).toFixed(1), cy: scale.y(point[field]).toFixed(1), r: 2.5, fill: colors[field] })]);
}

/** Returns an SVG element charting `points` ({minute, connections, rejections}, oldest first). */
export function drawChart(points) {
  const peak = Math.max(1, ...points.map((point) => Math.max(point.connections ?? 0, point.rejections)));
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const scale = {
    x: (index) => margin.left + (points.length > 1 ? (index / (points.length - 1)) * plotWidth : 0),
    y: (value) => margin.top + plotHeight - (value / peak) * plotHeight,
  };

  const svg = svgElement('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Connections and rejections per minute over the last hour' });
  svg.append(
    svgElement('line', { x1: margin.left, y1: scale.y(0), x2: width - margin.right, y2: scale.y(0), stroke: 'currentColor', 'stroke-opacity': 0.4 }),
    svgElement('text', { x: margin.left - 6, y: scale.y(peak) + 4, 'text-anchor': 'end', 'font-size': 11, fill: 'currentColor' }, String(peak)),
    svgElement('text', { x: margin.left - 6, y: scale.y(0) + 4, 'text-anchor': 'end', 'font-size': 11, fill: 'currentColor' }, '0'),
    svgElement('text', { x: margin.left, y: height - 6, 'font-size': 11, fill: 'currentColor' }, '60 min ago'),
    svgElement('text', { x: width - margin.right, y: height - 6, 'text-anchor': 'end', 'font-size': 11, fill: 'currentColor' }, 'now'),
    svgElement('text', { x: width / 2 - 90, y: height - 6, 'font-size': 11, fill: colors.connections }, '— connections'),
    svgElement('text', { x: width / 2 + 10, y: height - 6, 'font-size': 11, fill: colors.rejections }, '— rejections'),
    ...seriesLine(points, 'rejections', scale),
    ...seriesLine(points, 'connections', scale),
    ...seriesDots(points, 'connections', scale),
  );
  return svg;
}
