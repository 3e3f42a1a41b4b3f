import { renderPage } from '../web/html.ts';

/** Renders the page a logged-in user without the admin role gets from `GET /admin`, with status 403. */
export function renderAdminForbiddenPage(): string {
  return renderPage('Admin console', `<p class="error" id="admin-forbidden">Your account does not have the admin role. An operator can grant it with <code>portcullis users admin USERNAME --on</code>.</p>
<p><a class="button" href="/">Back to the start page</a></p>`);
}
