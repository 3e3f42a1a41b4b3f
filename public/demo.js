// Demo page: logs in through /login, then opens wss://<origin>/ws with the session cookie
// (sent by the browser) and the CSRF token as a subprotocol offer.
const $ = (id) => document.getElementById(id);
let socket = null;
let session = null;

function showFrame(direction, text) {
  const item = document.createElement('li');
  item.textContent = `${direction} ${text}`;
  item.className = direction === '←' ? 'received' : 'sent';
  $('frames').append(item);
}

function setConnected(connected, status) {
  $('status').textContent = status;
  $('connect').disabled = connected;
  $('disconnect').disabled = !connected;
  $('send').disabled = !connected;
}

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

function connect() {
  const url = `wss://${location.host}/ws`;
  socket = new WebSocket(url, ['portcullis.v1', `portcullis.csrf.${session.csrf_token}`]);
  setConnected(true, 'connecting');
  socket.addEventListener('open', () => setConnected(true, `connected (${socket.protocol})`));
  socket.addEventListener('message', (event) => showFrame('←', event.data));
  socket.addEventListener('close', (event) => {
    setConnected(false, `closed (${event.code}${event.reason ? ` ${event.reason}` : ''})`);
    socket = null;
  });
}

async function logout() {
  socket?.close(1000);
  await fetch('/logout', { method: 'POST', headers: { 'X-CSRF-Token': session.csrf_token }, credentials: 'same-origin' });
  session = await loadSession();
}

$('connect').addEventListener('click', connect);
$('disconnect').addEventListener('click', () => socket?.close(1000));
$('logout').addEventListener('click', logout);
$('send-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('message').value;
  if (!socket || text === '') {
    return;
  }
  socket.send(text);
  showFrame('→', text);
  $('message').value = '';
});

session = await loadSession();
document.body.dataset.ready = 'true';
