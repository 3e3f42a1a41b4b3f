// A small TLS-terminating load balancer for cluster tests, the way docs/deployment.md lays a cluster
// out: one public origin, `/ws` upgrades to a gateway node, every other request to the auth node.
// It opens a new TLS connection to the chosen node for each request, so every node serves TLS.
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';

/** A running load balancer. */
export interface LoadBalancer {
  port: number;
  /** Sends later WebSocket upgrades to the gateway on `port`. */
  routeUpgradesTo(port: number): void;
  close(): Promise<void>;
}

/** Settings of the load balancer: its certificate and where it forwards. */
export interface LoadBalancerOptions {
  port: number;
  cert: string;
  key: string;
  /** CA that signed the nodes' certificates. */
  ca: string;
  authPort: number;
  gatewayPort: number;
}

function rawHeaderLines(rawHeaders: string[]): string {
  const lines: string[] = [];
  for (let index = 0; index < rawHeaders.length; index += 2) {
    lines.push(`${rawHeaders[index]}: ${rawHeaders[index + 1]}\r\n`);
  }
  return lines.join('');
}

/** Starts the load balancer on 127.0.0.1. */
export async function startLoadBalancer(options: LoadBalancerOptions): Promise<LoadBalancer> {
  let gatewayPort = options.gatewayPort;
  const upstream = { host: '127.0.0.1', ca: options.ca, servername: 'localhost' };

  const server = https.createServer({ cert: options.cert, key: options.key }, (request, response) => {
    const forwarded = https.request({ ...upstream, port: options.authPort, method: request.method, path: request.url, headers: request.headers }, (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
      answer.pipe(response);
    });
    forwarded.on('error', () => response.destroy());
    request.pipe(forwarded);
  });

  server.on('upgrade', (request, socket, head) => {
    const node = tls.connect({ ...upstream, port: gatewayPort }, () => {
      node.write(`${request.method} ${request.url} HTTP/1.1\r\n${rawHeaderLines(request.rawHeaders)}\r\n`);
      node.write(head);
      socket.pipe(node).pipe(socket);
    });
    node.on('error', () => socket.destroy());
    socket.on('error', () => node.destroy());
  });

  await new Promise<void>((resolve) => server.listen(options.port, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    routeUpgradesTo(port) {
      gatewayPort = port;
    },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
