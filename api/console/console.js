// Chronicle console: a client of the public API only (the same routes /openapi.json
// documents), kept live by GET /events/stream. Each page is a module under pages/; this
// one routes `#/<page>[/<id>]` to it and shows each role only the pages its role may use,
// as the API's own declaration of each route's roles says (session.js `can`).

import { h, say } from './lib.js';
import { session, api, refresh, signOut, loadPolicy, can, stopStream } from './session.js';
import { signIn, signUp, join } from './pages/auth.js';
import { dashboard } from './pages/dashboard.js';
import { tasks } from './pages/tasks.js';
import { shop } from './pages/shop.js';
import { customers } from './pages/customers.js';
import { accounts } from './pages/accounts.js';
import { ai } from './pages/ai.js';
import { analytics } from './pages/analytics.js';
import { audit } from './pages/audit.js';
import { settings } from './pages/settings.js';
import { portal } from './pages/portal.js';

/** Every page: its label in the menu (none: not in it), and the route whose roles it needs
 *  (none: open to anyone, signed in or not). */
const PAGES = {
  signin: { page: signIn, label: 'Sign in', signedOut: true },
  signup: { page: signUp, label: 'Sign up', signedOut: true },
  join: { page: join, signedOut: true },
  dashboard: { page: dashboard, label: 'Dashboard', needs: ['GET', '/tasks'] },
  tasks: { page: tasks, label: 'Tasks', needs: ['GET', '/tasks'] },
  shop: { page: shop, label: 'Products and orders', needs: ['GET', '/orders'] },
  customers: { page: customers, label: 'Customers', needs: ['GET', '/customers'] },
  accounts: { page: accounts, label: 'Accounts', needs: ['GET', '/customers/{id}/accounts'] },
  ai: { page: ai, label: 'AI assistant', needs: ['POST', '/ai/query'] },
  analytics: { page: analytics, label: 'Analytics', needs: ['GET', '/analytics/daily'] },
  audit: { page: audit, label: 'Audit', needs: ['GET', '/audit/events'] },
  settings: { page: settings, label: 'Settings', needs: ['GET', '/tenants/{id}'] },
  // The portal is a CUSTOMER's own (staff reach a customer through Customers).
  portal: { page: portal, label: 'Portal', customer: true },
};

function allowed(p) {
  if (p.signedOut) return !session.access;
  if (!session.access) return false;
  if (p.customer) return session.role === 'CUSTOMER';
  return can(...p.needs);
}

/** Where a signed-in user lands: the first page their role may use. */
function home() {
  return Object.keys(PAGES).find((k) => PAGES[k].label && allowed(PAGES[k])) ?? 'signin';
}

function nav(current) {
  const links = Object.entries(PAGES).filter(([, p]) => p.label && allowed(p));
  document.getElementById('nav').replaceChildren(
    ...links.map(([k, p]) => h('a', { href: `#/${k}`, 'aria-current': k === current ? 'page' : null }, p.label)),
    session.access ? h('button', { class: 'plain', type: 'button', onclick: async () => {
      await signOut();
      location.hash = '#/signin';
    } }, 'Sign out') : null,
  );
  document.getElementById('who').textContent = session.access ? `${session.email ?? session.user} (${session.role}) · ${session.tenant}` : '';
}

async function route() {
  stopStream();
  if (session.access) {
    try {
      await loadPolicy();
    } catch (err) {
      say(`The API's description could not be read: ${err.message}`);
      return;
    }
    // Who is signed in, by their email where the role may read users (staff).
    if (session.email === undefined && can('GET', '/users/{id}')) {
      session.email = (await api('GET', `/users/${session.user}`).catch(() => null))?.email ?? null;
    }
  }
  const [name, ...rest] = (location.hash.replace(/^#\/?/, '') || '').split('/');
  const arg = rest.length ? decodeURIComponent(rest.join('/')) : undefined;
  const p = PAGES[name];
  if (!p || !allowed(p)) {
    const to = `#/${session.access ? home() : 'signin'}`;
    if (location.hash !== to) {
      location.hash = to;
      return;
    }
  }
  const key = p && allowed(p) ? name : home();
  nav(key);
  say('');
  try {
    await PAGES[key].page(arg);
  } catch (err) {
    if (err.status === 401) {
      session.access = null;
      location.hash = '#/signin';
    } else {
      say(err.message);
    }
  }
}

window.addEventListener('hashchange', route);
// A reload: the refresh cookie, if any, signs the page in again.
refresh().finally(route);
