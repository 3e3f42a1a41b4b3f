// Demo page: logs in through /login, then connects with the browser SDK, which sends the session
// cookie (the browser adds it) and the CSRF token, lists the session's scope, subscribes to channels
// and shows the messages that arrive.
import { createBrowserClient } from '/static/portcullis-client.js';

const $ = (id) => document.getElementById(id);
// Messages kept on screen; older ones are removed first.
const maxShownMessages = 100;
let session = null;
// True once the user edited the channel field, so a reconnect does not overwrite it.
let channelEdited = false;

function describeState(change) {
  const details = [change.reason];
  if (change.closeCode !== undefined) {
    details.push(`close ${change.closeCode}`);
  }
  if (change.retryInMs !== undefined) {
    details.push(`retry in ${change.retryInMs} ms`);
  }
  return change.state === 'open' ? 'open' : `${change.state} (${details.join(', ')})`;
}

// The server replaces {sub} and {client_id} in a scope with the token's own values.
function channelOfScope(scope, welcome) {
  return scope.slice(scope.indexOf(':') + 1).replaceAll('{sub}', welcome.sub).replaceAll('{client_id}', welcome.clientId);
}

function showScope(welcome) {
  const scopes = welcome.scope.split(' ').filter(Boolean);
  $('scope').replaceChildren(...scopes.map((scope) => {
    const item = document.createElement('li');
    item.textContent = scope;
    return item;
  }));

  const firstSubscribe = scopes.find((scope) => scope.startsWith('subscribe:'));
  if (firstSubscribe && !channelEdited) {
    $('channel').value = channelOfScope(firstSubscribe, welcome);
  }
}

function showSubscriptions() {
  $('subscriptions').replaceChildren(...client.subscriptions.map((channel) => {
    const item = document.createElement('li');
    const name = document.createElement('code');
    name.textContent = channel;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'secondary';
    remove.textContent = 'Unsubscribe';
    remove.addEventListener('click', () => client.unsubscribe(channel).finally(showSubscriptions));
    item.append(name, ' ', remove);
    return item;
  }));
}

function showMessage(message) {
  const item = document.createElement('li');
  const header = document.createElement('div');
  header.className = 'message-header';
  header.textContent = `${new Date(message.timestamp).toLocaleTimeString()} ${message.channel} from ${message.publisher.clientId}`;
  const data = document.createElement('pre');
  data.textContent = JSON.stringify(message.data);
  item.append(header, data);
  $('messages').prepend(item);
  while ($('messages').children.length > maxShownMessages) {
    $('messages').lastElementChild.remove();
  }
}

function showError(text) {
  $('channel-error').textContent = text;
  $('channel-error').hidden = text === '';
}

function showState(change) {
  const open = change.state === 'open';
  $('status').textContent = describeState(change);
  $('connect').disabled = change.state !== 'stopped' && change.state !== 'unauthenticated';
  $('disconnect').disabled = !$('connect').disabled;
  $('subscribe').disabled = !open;
  if (open) {
    showScope(change.welcome);
  }
  if (change.state === 'unauthenticated') {
    void loadSession().then((body) => {
      session = body;
    });
  }
}

const client = createBrowserClient({
  onStateChange: showState,
  onMessage: showMessage,
  onSubscribed: showSubscriptions,
  onSubscriptionEnded: (event) => {
    showError(`The server ended the subscription to ${event.channel} (${event.code}).`);
    showSubscriptions();
  },
});

async function loadSession() {
  const response = await fetch('/session', { credentials: 'same-origin' });
  if (response.status === 401) {
    $('signed-out').hidden = false;
    $('signed-in').hidden = true;
    return null;
  }
  const body = await response.json();
  $('user').textContent = body.user;
  $('signed-out').hidden = true;
  $('signed-in').hidden = false;
  return body;
}

async function logout() {
  client.close();
  await fetch('/logout', { method: 'POST', headers: { 'X-CSRF-Token': session.csrf_token }, credentials: 'same-origin' });
  session = await loadSession();
}

$('connect').addEventListener('click', () => client.connect());
$('disconnect').addEventListener('click', () => client.close());
$('logout').addEventListener('click', logout);
$('channel').addEventListener('input', () => {
  channelEdited = true;
});
$('subscribe-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const channel = $('channel').value.trim();
  if (channel === '') {
    return;
  }
  showError('');
  try {
    await client.subscribe(channel);
  } catch (error) {
    showError(error.message);
  }
  showSubscriptions();
});

session = await loadSession();
document.body.dataset.ready = 'true';
