import type { TestServer } from './server.ts';

/** Cookies kept across the requests of one scripted login. */
class CookieJar {
  private readonly cookies = new Map<string, string>();

  store(response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair] = header.split(';');
      const separator = pair.indexOf('=');
      const name = pair.slice(0, separator).trim();
      const value = pair.slice(separator + 1).trim();
      if (value === '' || /max-age=0|expires=Thu, 01 Jan 1970/i.test(header)) {
        this.cookies.delete(name);
      } else {
        this.cookies.set(name, value);
      }
    }
  }

  header(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  get(name: string): string | undefined {
    return this.cookies.get(name);
  }
}

/** A logged-in browser session obtained without a browser. */
export interface ScriptedSession {
  /** The session token from the `__Host-portcullis-session` cookie. */
  sessionToken: string;
  csrfToken: string;
  /** `Cookie` header value carrying only the session cookie. */
  cookieHeader: string;
}

/**
 * Logs in through `/login`, the real login form and the authorization-code redirects, the way a
 * browser would, and returns the session cookie and CSRF token.
 */
export async function scriptedLogin(server: TestServer, username: string, password: string): Promise<ScriptedSession> {
  const jar = new CookieJar();
  const get = async (url: string) => {
    const response = await server.fetch(new URL(url, server.url), { headers: { cookie: jar.header() } });
    jar.store(response);
    return response;
  };

  let response = await get('/login');
  for (let hop = 0; hop < 10 && response.status === 303; hop += 1) {
    const location = response.headers.get('location')!;
    response = await get(location);
    if (response.status === 200 && new URL(location, server.url).pathname.startsWith('/interaction/')) {
      const page = await response.text();
      const csrf = /name="csrf_token" value="([^"]+)"/.exec(page)?.[1] ?? '';
      const action = /action="([^"]+)"/.exec(page)?.[1] ?? '';
      response = await server.fetch(new URL(action, server.url), {
        method: 'POST',
        headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ csrf_token: csrf, username, password }).toString(),
      });
      jar.store(response);
      if (response.status !== 303) {
        throw new Error(`login form answered ${response.status}`);
      }
    }
  }

  const sessionToken = jar.get('__Host-portcullis-session');
  if (!sessionToken) {
    throw new Error(`login did not set the session cookie (last status ${response.status})`);
  }
  const cookieHeader = `__Host-portcullis-session=${sessionToken}`;
  const session = await server.fetch(`${server.url}/session`, { headers: { cookie: cookieHeader } });
  const { csrf_token: csrfToken } = await session.json() as { csrf_token: string };
  return { sessionToken, csrfToken, cookieHeader };
}
