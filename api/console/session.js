// The console's session with the API: the access token in this module's memory only,
// never in web storage; the refresh token an HttpOnly, SameSite=Strict cookie for /auth
// that no script can read (X-Refresh-Cookie: 1), which a reload exchanges for a new access
// token. What a role may do is read from the API's own declaration (`/openapi.json`), the
// one the server enforces.

import { say } from './lib.js';

export const session = { access: null, role: null, user: null, tenant: null, customer: null };
const COOKIE = { 'X-Refresh-Cookie': '1' };
let live = null; // the AbortController of the open event stream
let rules = null; // "METHOD /path/{template}" → the roles of its bearer security, or null if public

function problemText(p) {
  if (!p || typeof p !== 'object') return 'The request failed.';
  return [p.title, p.detail].filter(Boolean).join(': ');
}

/** Throws the problem+json of a failed response as an Error (its `status` and `problem`). */
async function failure(res) {
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  const e = new Error(problemText(data));
  e.status = res.status;
  e.problem = data;
  return e;
}

/** A request with the session's token (and `extra` headers), refreshed once on a 401. */
async function send(method, path, body, extra = {}, retried = false) {
  const headers = { Accept: 'application/json', ...(path.startsWith('/auth/') || path === '/tenants' ? COOKIE : {}), ...extra };
  if (session.access) headers.Authorization = `Bearer ${session.access}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401 && session.access && !retried && (await refresh())) {
    return send(method, path, body, extra, true);
  }
  if (!res.ok) throw await failure(res);
  return res;
}

/** The JSON answer of a request (null if none); a failure throws its problem. `headers`:
 *  more to send, as `If-Match` for a change to the version the user saw. */
export async function api(method, path, body, headers = {}) {
  const text = await (await send(method, path, body, headers)).text();
  return text ? JSON.parse(text) : null;
}

/** A file the API serves (following its redirect to a signed link), saved as `name`. */
export async function download(path, name) {
  const blob = await (await send('GET', path)).blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return blob.size;
}

export async function refresh() {
  try {
    const res = await fetch('/auth/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...COOKIE },
      body: '{}',
    });
    if (!res.ok) return false;
    signedIn(await res.json());
    return true;
  } catch {
    return false;
  }
}

export function signedIn(t) {
  if (session.user !== t.user_id) session.email = undefined;
  session.access = t.access_token;
  session.role = t.role;
  session.user = t.user_id;
  session.tenant = t.tenant_id;
  session.customer = t.customer_id ?? null;
}

export async function signOut() {
  stopStream();
  try {
    await api('POST', '/auth/signout', {});
  } catch {
    // Signed out here whatever the server says.
  }
  Object.assign(session, { access: null, role: null, user: null, tenant: null, customer: null, email: undefined });
}

// ---------------------------------------------------------------- what a role may do

/** Reads every operation's security from `/openapi.json`, once. */
export async function loadPolicy() {
  if (rules) return;
  const res = await fetch('/openapi.json', { headers: { Accept: 'application/json' } });
  if (!res.ok) throw await failure(res);
  const doc = await res.json();
  const found = new Map();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const bearer = (op.security ?? []).find((s) => s.bearer);
      found.set(`${method.toUpperCase()} ${path}`, bearer ? bearer.bearer : null);
    }
  }
  rules = found;
}

const staff = () => ['OWNER', 'ADMIN', 'MEMBER'].includes(session.role);

/** Whether the signed-in role may call `method path` (a path template of /openapi.json),
 *  as the server's policy reads the same declaration: no roles named is the tenant's staff;
 *  ADMIN includes the OWNER; a CUSTOMER route also admits staff. */
export function can(method, path) {
  if (!rules) return false;
  const roles = rules.get(`${method} ${path}`);
  if (roles === undefined) return false;
  if (roles === null) return true;
  if (roles.length === 0) return staff();
  const role = session.role === 'OWNER' ? 'ADMIN' : session.role;
  return roles.includes(role) || (roles.includes('CUSTOMER') && staff());
}

// ---------------------------------------------------------------- lists and live events

/** Every item of a paged list (up to 1000), following `next_cursor`. */
export async function allPages(path, query = '') {
  const items = [];
  let cursor = null;
  do {
    const q = new URLSearchParams(query);
    q.set('limit', '100');
    if (cursor) q.set('cursor', cursor);
    const page = await api('GET', `${path}?${q}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < 1000);
  return items;
}

/** Reads GET /events/stream (fetch, so that the token goes in a header) until the page
 *  changes, resuming after the last id on reconnect; calls `on(type, data)` per event. */
export async function stream(on) {
  stopStream();
  const ctl = new AbortController();
  live = ctl;
  let lastId = null;
  while (!ctl.signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${session.access}` };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const res = await fetch('/events/stream', { headers, signal: ctl.signal });
      if (res.status === 401 && !(await refresh())) return;
      if (!res.ok) throw new Error(`stream ${res.status}`);
      say('Live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let type = null;
          const data = [];
          for (const line of block.split('\n')) {
            const i = line.indexOf(':');
            const name = i < 0 ? line : line.slice(0, i);
            const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (name === 'event') type = v;
            else if (name === 'data') data.push(v);
            else if (name === 'id') lastId = v;
          }
          if (type && data.length) on(type, JSON.parse(data.join('\n')));
        }
      }
    } catch {
      if (ctl.signal.aborted) return;
      say('Reconnecting…');
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export function stopStream() {
  if (live) live.abort();
  live = null;
}

/** Calls `reload` when an event of a stream with one of `prefixes` arrives (at most one
 *  reload at a time; events arriving meanwhile cause one more). */
export function reloadOn(prefixes, reload) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return;
    }
    do {
      again = false;
      running = Promise.resolve(reload()).catch((err) => say(err.message));
      await running;
    } while (again);
    running = null;
  };
  stream((type, e) => {
    if (prefixes.some((p) => e.stream_id.startsWith(p))) run();
  });
}
