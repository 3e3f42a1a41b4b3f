import type { ServerResponse } from 'node:http';

/**
 * Sets the headers every response carries: HSTS, no MIME sniffing, no referrer, no framing, and a
 * Content-Security-Policy that allows only this origin's own scripts, styles and WebSocket.
 */
export function applySecurityHeaders(response: ServerResponse, publicUrl: string): void {
  const websocketOrigin = publicUrl.replace(/^https:/, 'wss:');
  response.setHeader('Strict-Transport-Security', 'max-age=31536000');
  response.setHeader('X-Content-Type-Options', 'nosniff');
  response.setHeader('Referrer-Policy', 'no-referrer');
  response.setHeader('X-Frame-Options', 'DENY');
  response.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  response.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  response.setHeader('Content-Security-Policy', [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    `connect-src 'self' ${websocketOrigin}`,
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; '));
}
