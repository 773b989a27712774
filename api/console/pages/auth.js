// Signing in, signing a tenant up, and accepting an invitation (a colleague's or a
// customer's portal invitation): each signs the page in with the answer's tokens.

import { h, field, show, errorBox, attempt } from '../lib.js';
import { api, signedIn } from '../session.js';

/** A form whose submission posts `body()` to `path` and signs the page in with the answer. */
function signingForm(path, body, fields, submit) {
  const error = errorBox();
  return h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault();
    const t = await attempt(error, () => api('POST', path, body()));
    if (t) {
      signedIn(t);
      location.hash = '#/';
    }
  } }, ...fields, h('button', { type: 'submit' }, submit), error);
}

export function signIn() {
  const tenant = h('input', { name: 'tenant_id', required: true, autocomplete: 'organization' });
  const email = h('input', { name: 'email', type: 'email', required: true, autocomplete: 'username' });
  const password = h('input', { name: 'password', type: 'password', required: true, autocomplete: 'current-password' });
  show('Sign in', signingForm('/auth/signin',
    () => ({ tenant_id: tenant.value, email: email.value, password: password.value }),
    [field('Tenant id', tenant), field('Email', email), field('Password', password)], 'Sign in'),
  h('p', {}, 'Invited? ', h('a', { href: '#/join' }, 'Accept an invitation'), '.'));
}

export function signUp() {
  const company = h('input', { name: 'company_name', required: true, autocomplete: 'organization' });
  const email = h('input', { name: 'admin_email', type: 'email', required: true, autocomplete: 'username' });
  const password = h('input', { name: 'admin_password', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' });
  const tier = h('select', { name: 'tier' }, ...['basic', 'premium', 'enterprise'].map((t) => h('option', { value: t }, t)));
  // The tenant's first user: its OWNER, signed in by the answer.
  show('Sign up a tenant', signingForm('/tenants',
    () => ({ company_name: company.value, admin_email: email.value, admin_password: password.value, tier: tier.value }),
    [field('Company name', company), field('Your email', email), field('Password (12 characters or more)', password), field('Tier', tier)],
    'Sign up'));
}

/** `#/join/<tenant>`: a one-time invitation code makes a user of the tenant (the role and,
 *  for a portal invitation, the customer are the invitation's). */
export function join(tenantId = '') {
  const tenant = h('input', { name: 'tenant_id', required: true, value: tenantId, autocomplete: 'organization' });
  const code = h('input', { name: 'invitation_code', required: true, autocomplete: 'one-time-code' });
  const email = h('input', { name: 'email', type: 'email', required: true, autocomplete: 'username' });
  const password = h('input', { name: 'password', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' });
  show('Accept an invitation', signingForm('/auth/signup',
    () => ({ tenant_id: tenant.value, invitation_code: code.value, email: email.value, password: password.value }),
    [field('Tenant id', tenant), field('Invitation code', code), field('Your email', email), field('Password (12 characters or more)', password)],
    'Join'));
}
