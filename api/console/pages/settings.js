// Settings (seed 003): the tenant, its tier and limits, the users, invitations, and the
// Salesforce and SFTP connections, shown without their secrets (the API never returns them).

import { h, field, show, errorBox, attempt, facts, table, when } from '../lib.js';
import { api, allPages, can, session } from '../session.js';

export async function settings() {
  const error = errorBox();
  const t = await api('GET', `/tenants/${session.tenant}`);
  const limits = Object.entries(t.limits).map(([k, v]) => [k.replaceAll('_', ' '), v]);
  const users = h('tbody', { id: 'users' });
  const issued = h('p', { id: 'invitation', role: 'status' });
  const role = h('select', { name: 'role' }, h('option', { value: 'MEMBER' }, 'MEMBER'), h('option', { value: 'ADMIN' }, 'ADMIN'));
  const invite = can('POST', '/users/invitations')
    ? h('form', { class: 'row', 'aria-label': 'Invite a user', onsubmit: async (e) => {
      e.preventDefault();
      const inv = await attempt(error, () => api('POST', '/users/invitations', { role: role.value }));
      if (inv) {
        issued.replaceChildren(`Invitation code for a ${inv.role}: ${inv.code} (expires ${when(inv.expires_at)}); they accept it at `,
          h('a', { href: `#/join/${session.tenant}` }, 'Accept an invitation'), '.');
      }
    } }, field('Role', role), h('button', { type: 'submit' }, 'Invite'))
    : null;
  const connections = h('div', { id: 'connections' });
  const mayConnect = can('GET', '/salesforce/connection');
  show('Settings', error,
    h('h2', {}, 'Tenant'),
    facts('Tenant', [['Company', t.company_name], ['Tenant id', t.tenant_id], ['Tier', t.tier], ['Status', t.status],
      ['AI tokens this month', t.usage.ai_tokens]]),
    h('h2', {}, `Limits of the ${t.tier} tier`), facts('Limits', limits),
    h('h2', {}, 'Users'), table('Users', ['Email', 'Role', 'State'], users),
    invite, issued,
    mayConnect ? h('h2', {}, 'Connections') : null, connections);
  const all = await allPages('/users');
  users.replaceChildren(...all.map((u) => h('tr', {}, h('td', {}, u.email), h('td', {}, u.role),
    h('td', {}, u.disabled ? 'disabled' : 'active'))));
  if (!mayConnect) return;
  const shown = [];
  for (const [name, path, keys] of [
    ['Salesforce', '/salesforce/connection', ['login_url', 'client_id', 'connected_at']],
    ['SFTP', '/integrations/sftp', ['host', 'port', 'username', 'auth', 'host_key_fingerprint', 'inbox_dir', 'processed_dir', 'schedule']],
  ]) {
    try {
      const c = await api('GET', path);
      shown.push(h('h3', {}, name), facts(name, keys.filter((k) => c[k] !== undefined).map((k) => [k.replaceAll('_', ' '), c[k]])));
    } catch (err) {
      shown.push(h('h3', {}, name), h('p', { class: 'muted' }, err.status === 404 ? 'Not connected.' : err.message));
    }
  }
  connections.replaceChildren(...shown);
}
