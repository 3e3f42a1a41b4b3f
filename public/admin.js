// Admin console: lists live connections with actions, rejected handshakes by code, and a chart of
// the last hour. Every action is a POST with the session's CSRF token in X-CSRF-Token.
// The page refreshes when the server publishes its counts on admin/stats over the page's own
// WebSocket, about every 5 s, and polls the API slowly in case the socket is down.
import { drawChart } from '/static/admin-chart.js';
import { createBrowserClient } from '/static/portcullis-client.js';

const $ = (id) => document.getElementById(id);
const statsChannel = 'admin/stats';
const fallbackRefreshMs = 30_000;
let csrfToken = '';

function showError(message) {
  $('admin-error').textContent = message;
  $('admin-error').hidden = message === '';
}

async function readJson(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error_description ?? `request failed with status ${response.status}`);
  }
  return body;
}

async function getJson(path) {
  const response = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
  if (response.status === 401) {
    window.location.assign('/login');
  }
  return readJson(response);
}

async function postAction(path) {
  const response = await fetch(path, { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrfToken } });
  return readJson(response);
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function actionButton(label, className, path) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = className;
  button.textContent = label;
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await postAction(path);
      showError('');
    } catch (error) {
      showError(`${label} failed: ${error.message}`);
    }
    await refresh();
  });
  return button;
}

function connectionRow(connection) {
  const row = document.createElement('tr');
  row.dataset.connectionId = connection.id;
  row.dataset.clientId = connection.client_id;
  const actions = document.createElement('td');
  actions.append(actionButton('Revoke', 'revoke', `/admin/api/connections/${encodeURIComponent(connection.id)}/revoke`));
  if (connection.kind === 'device') {
    actions.append(actionButton('Disable device', 'disable-device', `/admin/api/devices/${encodeURIComponent(connection.client_id)}/disable`));
  }
  // Only a connection with a grant acts for a user; a client-credentials token's sub is the device.
  if (connection.grant_id) {
    actions.append(actionButton('Disable user', 'disable-user', `/admin/api/users/${encodeURIComponent(connection.sub)}/disable`));
  }

  const user = connection.grant_id ? connection.sub : '-';
  const device = connection.kind === 'device' ? connection.client_id : '-';
  const since = new Date(connection.connected_at * 1000).toLocaleTimeString();
  // A device connection records its client id where a browser connection records its page origin.
  const origin = connection.kind === 'browser' ? connection.origin ?? '-' : '-';
  row.append(cell(connection.id), cell(connection.kind), cell(user), cell(device), cell(origin), cell(since), actions);
  return row;
}

async function showConnections() {
  const query = new URLSearchParams(new FormData($('filters')));
  const { connections } = await getJson(`/admin/api/connections?${query}`);
  $('connections').tBodies[0].replaceChildren(...connections.map(connectionRow));
  $('no-connections').hidden = connections.length > 0;
}

async function showRejections() {
  const { rejections } = await getJson('/admin/api/rejections');
  $('rejections').tBodies[0].replaceChildren(...rejections.map((rejection) => {
    const row = document.createElement('tr');
    row.append(cell(rejection.code), cell(String(rejection.count)));
    return row;
  }));
  $('no-rejections').hidden = rejections.length > 0;
}

async function showChart() {
  const { points } = await getJson('/admin/api/series');
  $('chart').replaceChildren(drawChart(points));
}

async function refresh() {
  try {
    await Promise.all([showConnections(), showRejections(), showChart()]);
    $('updated').textContent = new Date().toLocaleTimeString();
  } catch (error) {
    showError(`Loading the console failed: ${error.message}`);
  }
}

function showLiveCounts(message) {
  const { browser, device } = message.data;
  $('live-counts').textContent = `${browser + device} live (${browser} browser, ${device} device)`;
  void refresh();
}

function connectLiveUpdates() {
  const client = createBrowserClient({
    onStateChange: (change) => {
      $('live-status').textContent = change.state === 'open' ? 'live' : change.state;
    },
  });
  client.connect();
  client.subscribe(statsChannel, showLiveCounts).catch((error) => showError(`Live updates are off: ${error.message}`));
}

async function start() {
  const session = await getJson('/session');
  csrfToken = session.csrf_token;
  $('admin-user').textContent = session.user;

  $('filters').addEventListener('input', () => void showConnections().catch((error) => showError(error.message)));
  $('filters').addEventListener('submit', (event) => event.preventDefault());
  await refresh();
  connectLiveUpdates();
  setInterval(() => void refresh(), fallbackRefreshMs);
  document.body.dataset.ready = 'true';
}

start().catch((error) => showError(`Loading the console failed: ${error.message}`));
