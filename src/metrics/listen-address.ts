import net from 'node:net';

import { OptionsError } from '../config/value-checks.ts';

/** Host and port of the metrics listener. */
export interface ListenAddress {
  host: string;
  port: number;
}

const optionName = 'metricsListen (--metrics-listen)';

// A BlockList matches every spelling of an address, such as 0:0:0:0:0:0:0:1 or ::ffff:127.0.0.1.
const loopback = new net.BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

function isLoopback(host: string): boolean {
  const family = net.isIP(host);
  if (family === 0) {
    return false;
  }
  return loopback.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Parses `HOST:PORT` (`[::1]:PORT` for IPv6) of the token-free metrics listener. The host must be a
 * loopback address (127.0.0.0/8 or ::1), because anyone who reaches the listener reads the metrics.
 * Throws an `OptionsError` that names the option and the fix.
 */
export function parseMetricsListen(value: unknown): ListenAddress {
  if (typeof value !== 'string') {
    throw new OptionsError(`${optionName} must be a string HOST:PORT, such as 127.0.0.1:9464, got ${JSON.stringify(value)}.`);
  }

  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (!match) {
    throw new OptionsError(`${optionName} must be HOST:PORT, such as 127.0.0.1:9464 or [::1]:9464, got ${JSON.stringify(value)}.`);
  }

  const host = match[1] ?? match[2];
  const port = Number(match[3]);
  if (port > 65535) {
    throw new OptionsError(`${optionName} has port ${port}; use 0 to 65535.`);
  }
  // The listener serves metrics without a token, so it must not be reachable from other hosts.
  if (!isLoopback(host)) {
    throw new OptionsError(`${optionName} accepts only a loopback IP address (127.0.0.0/8 or ::1), and host names are not resolved; got ${JSON.stringify(host)}. Scrape remotely through GET /metrics on the HTTPS listener with an admin:metrics token instead.`);
  }
  return { host, port };
}
