import type { KoaContextWithOIDC } from 'oidc-provider';

import { escapeHtml, renderPage } from '../web/html.ts';

/** Pages of the device authorization grant (RFC 8628) as oidc-provider renders them. */
export const deviceFlowPages = {
  async userCodeInputSource(ctx: KoaContextWithOIDC, form: string, _out: unknown, error?: Error & { userCode?: string }) {
    let message = '<p>Enter the code your device shows.</p>';
    if (error) {
      message = error.userCode || error.name === 'NoCodeError'
        ? '<p class="error">That code is invalid or has expired. Check the device and try again.</p>'
        : '<p class="error">The request could not be processed. Start again on the device.</p>';
    }
    ctx.type = 'html';
    ctx.body = renderPage('Connect a device', `${message}
${form}
<button type="submit" form="op.deviceInputForm">Continue</button>`);
  },

  async userCodeConfirmSource(ctx: KoaContextWithOIDC, form: string, client: { clientId: string }, _deviceInfo: unknown, userCode: string) {
    ctx.type = 'html';
    ctx.body = renderPage('Confirm the device', `<p>Device <strong>${escapeHtml(client.clientId)}</strong> asks to act for you.</p>
<p>Continue only if the device shows this code:</p>
<p class="user-code"><code>${escapeHtml(userCode)}</code></p>
${form}
<button type="submit" form="op.deviceConfirmForm">Approve</button>
<button type="submit" form="op.deviceConfirmForm" value="yes" name="abort" class="secondary">Deny</button>`);
  },

  async successSource(ctx: KoaContextWithOIDC) {
    ctx.type = 'html';
    ctx.body = renderPage('Device connected', '<p>The device is approved. You can close this page.</p>');
  },
};

/** Renders auth server errors with the OAuth error code only; internal details go to the log. */
export async function renderAuthError(ctx: KoaContextWithOIDC, out: { error?: string; error_description?: string }, _error: Error) {
  const code = escapeHtml(out.error ?? 'server_error');
  const description = out.error === 'server_error' ? 'An internal error occurred.' : escapeHtml(out.error_description ?? '');
  ctx.type = 'html';
  ctx.body = renderPage('Request failed', `<p class="error"><code>${code}</code></p><p>${description}</p><p><a href="/">Back to the start page</a></p>`);
}
