// Customers (seed 000): search the tenant's customers synced from Salesforce, a customer's
// detail with its contact and accounts; for ADMINs the Salesforce sync button with the
// run's progress and counts, and portal invitations for a customer's contacts.

import { h, field, show, errorBox, attempt, facts, table, when } from '../lib.js';
import { api, allPages, can, session, reloadOn } from '../session.js';

/** The last sync's state: status and counts, as `GET /salesforce/sync/{id}` shows them. */
function syncFacts(s) {
  const counts = Object.entries(s.counts).map(([k, v]) => [k.replaceAll('_', ' '), v]);
  return facts('Sync', [['Status', s.status], ['Started', when(s.started_at)], ['Completed', when(s.completed_at)],
    ...(s.error ? [['Error', s.error]] : []), ...counts]);
}

export async function customers(id) {
  if (id) return customer(id);
  const error = errorBox();
  const q = h('input', { name: 'q', type: 'search', placeholder: 'name or contact email' });
  const body = h('tbody', { id: 'customers' });
  const synced = h('p', { class: 'muted', id: 'last-synced' });
  const progress = h('div', { id: 'sync', role: 'status' });
  let running = null; // the sync this page started or found running
  const load = async () => {
    const query = new URLSearchParams();
    if (q.value) query.set('q', q.value);
    const rows = await attempt(error, () => allPages('/customers', query));
    if (rows) {
      body.replaceChildren(...rows.map((c) => h('tr', { 'data-customer': c.customer_id },
        h('td', {}, h('a', { href: `#/customers/${c.customer_id}`, class: 'name' }, c.name)),
        h('td', {}, c.billing_city ?? '—'), h('td', {}, c.contact_name ?? '—'), h('td', {}, c.contact_email ?? '—'),
        h('td', {}, c.agent_id ?? '—'))));
    }
    if (running) {
      const s = await api('GET', `/salesforce/sync/${running}`);
      progress.replaceChildren(h('h2', {}, 'Salesforce sync'), syncFacts(s));
      if (s.status !== 'RUNNING') {
        running = null;
        synced.textContent = `Last sync ${s.status} at ${when(s.completed_at)}.`;
      }
    }
  };
  const sync = can('POST', '/salesforce/sync')
    ? h('button', { type: 'button', id: 'sync-now', onclick: async () => {
      const s = await attempt(error, () => api('POST', '/salesforce/sync'));
      if (s) {
        running = s.sync_id;
        progress.replaceChildren(h('h2', {}, 'Salesforce sync'), h('p', {}, 'Started…'));
        await load();
      }
    } }, 'Sync from Salesforce')
    : null;
  const search = h('form', { class: 'row', role: 'search', 'aria-label': 'Search customers', onsubmit: (e) => { e.preventDefault(); load(); } },
    field('Search', q), h('button', { class: 'plain', type: 'submit' }, 'Search'), sync);
  show('Customers', search, error, synced, progress, table('Customers', ['Name', 'City', 'Contact', 'Email', 'Agent'], body));
  // Oldest first: the latest is the last.
  const latest = (await allPages('/salesforce/syncs')).at(-1);
  if (latest) {
    synced.textContent = `Last sync ${latest.status} at ${when(latest.completed_at ?? latest.started_at)}.`;
    if (latest.status === 'RUNNING') running = latest.sync_id;
  } else {
    synced.textContent = 'Never synced.';
  }
  await load();
  reloadOn(['customer-', 'customersync-'], load);
}

async function customer(id) {
  const error = errorBox();
  const c = await api('GET', `/customers/${encodeURIComponent(id)}`);
  const accounts = h('tbody', { id: 'accounts' });
  const issued = h('p', { id: 'portal-invitation', role: 'status' });
  const load = async () => {
    const rows = await allPages(`/customers/${c.customer_id}/accounts`);
    accounts.replaceChildren(...rows.map((a) => h('tr', { 'data-account': a.account_id },
      h('td', {}, h('a', { href: `#/accounts/${a.account_id}` }, a.account_number)), h('td', {}, a.type),
      h('td', {}, h('span', { class: 'balance' }, `${a.balance} ${a.currency}`)), h('td', {}, `${a.available} ${a.currency}`),
      h('td', {}, a.status))));
  };
  const type = h('select', { name: 'type' }, h('option', { value: 'checking' }, 'checking'), h('option', { value: 'savings' }, 'savings'));
  const currency = h('input', { name: 'currency', required: true, value: 'USD', maxlength: 3, size: 4 });
  const overdraft = h('input', { name: 'overdraft_limit', inputmode: 'decimal', placeholder: '0' });
  const open = can('POST', '/customers/{id}/accounts')
    ? h('form', { class: 'row', 'aria-label': 'Open an account', onsubmit: async (e) => {
      e.preventDefault();
      const body = { type: type.value, currency: currency.value };
      if (overdraft.value) body.overdraft_limit = overdraft.value;
      if (await attempt(error, () => api('POST', `/customers/${c.customer_id}/accounts`, body))) await load();
    } }, field('Type', type), field('Currency', currency), field('Overdraft limit', overdraft), h('button', { type: 'submit' }, 'Open account'))
    : null;
  const email = h('input', { name: 'email', type: 'email', required: true, value: c.contact_email ?? '' });
  const invite = can('POST', '/customers/{id}/portal-invitations')
    ? h('form', { class: 'row', 'aria-label': 'Invite to the portal', onsubmit: async (e) => {
      e.preventDefault();
      const inv = await attempt(error, () => api('POST', `/customers/${c.customer_id}/portal-invitations`, { email: email.value }));
      if (inv) {
        issued.replaceChildren(`Portal invitation code for ${email.value}: `, h('code', { class: 'code' }, inv.code),
          ` (expires ${when(inv.expires_at)}); they accept it at `, h('a', { href: `#/join/${session.tenant}` }, 'Accept an invitation'), '.');
      }
    } }, field('Contact email', email), h('button', { type: 'submit' }, 'Invite'))
    : null;
  show(c.name, h('p', {}, h('a', { href: '#/customers' }, 'All customers')), error,
    facts('Customer', [['Salesforce Id', c.customer_id], ['Industry', c.industry], ['Phone', c.phone], ['Website', c.website],
      ['City', c.billing_city], ['Country', c.billing_country], ['Agent', c.agent_id], ['Updated', when(c.updated_at)]]),
    h('h2', {}, 'Contact'), facts('Contact', [['Name', c.contact_name], ['Email', c.contact_email]]),
    invite, issued,
    h('h2', {}, 'Accounts'), open, table('Accounts', ['Number', 'Type', 'Balance', 'Available', 'Status'], accounts));
  await load();
  reloadOn(['account-'], load);
}
