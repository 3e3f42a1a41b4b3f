// The socket.io peer: Socket.IO over its WebSocket transport only, with a JWT middleware. Socket.IO
// runs middlewares after the WebSocket upgrade, when the client's CONNECT packet brings `auth`.
import { Server } from 'socket.io';

import { controlRoutes, createPeerServer, createTokenVerifier, heartbeatIntervalMs, listenAndReport, maxPayloadBytes, readPeerSettings } from './peer.ts';

const settings = readPeerSettings();
if (!settings.publicJwk) {
  throw new Error('the socket.io peer needs publicJwk');
}
const verifyToken = await createTokenVerifier(settings.publicJwk);

const subjectRoom = (subject: string) => `subject:${subject}`;

const server = createPeerServer(settings, controlRoutes(revoke));
const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  pingInterval: heartbeatIntervalMs,
  maxHttpBufferSize: maxPayloadBytes,
  perMessageDeflate: false,
});

function revoke(subject: string | null): number {
  const room = io.sockets.adapter.rooms.get(subjectRoom(subject ?? ''));
  const count = room?.size ?? 0;
  io.in(subjectRoom(subject ?? '')).disconnectSockets(true);
  return count;
}

io.use((socket, next) => {
  const token: unknown = socket.handshake.auth?.token;
  if (typeof token !== 'string') {
    next(new Error('unauthorized'));
    return;
  }
  verifyToken(token).then((payload) => {
    socket.data.subject = payload.sub;
    next();
  }, () => next(new Error('unauthorized')));
});

io.on('connection', (socket) => {
  socket.join(subjectRoom(socket.data.subject as string));

  socket.on('subscribe', (channel: unknown, acknowledge: unknown) => {
    if (typeof channel !== 'string') {
      return;
    }
    socket.join(channel);
    if (typeof acknowledge === 'function') {
      acknowledge();
    }
  });

  socket.on('publish', (frame: { channel?: unknown; data?: unknown } | undefined) => {
    if (typeof frame?.channel !== 'string') {
      return;
    }
    io.to(frame.channel).emit('message', { channel: frame.channel, data: frame.data });
  });
});

await listenAndReport(server, settings, async () => {
  io.disconnectSockets(true);
  await io.close();
});
