// An account of the CRM ledger (issue 11): its balance and state, postings for ADMINs
// (deposit, withdrawal, fee, interest, a transfer to another account, a reversal), freeze,
// unfreeze and close for ADMINs, and its transaction log filtered by dates and kind.

import { h, field, show, errorBox, attempt, choice, facts, table, when } from '../lib.js';
import { api, allPages, can, reloadOn } from '../session.js';

const KINDS = ['deposit', 'withdrawal', 'transfer', 'fee', 'interest', 'reversal'];
const today = () => new Date().toISOString().slice(0, 10);
/** A reference unique enough for postings made by hand; the user may type their own. */
const reference = () => `console-${Date.now().toString(36)}`;

export async function account(id) {
  const error = errorBox();
  const summary = h('div', { id: 'account' });
  const actions = h('div', { class: 'row' });
  const lines = h('tbody', { id: 'lines' });
  const from = h('input', { name: 'from', type: 'date' });
  const to = h('input', { name: 'to', type: 'date' });
  const kind = choice('kind', ['', ...KINDS]);
  const mayReverse = can('POST', '/transactions/{id}/reverse');
  let a = null;
  const load = async () => {
    a = await api('GET', `/accounts/${encodeURIComponent(id)}`);
    summary.replaceChildren(facts('Account', [['Number', a.account_number], ['Customer', h('a', { href: `#/customers/${a.customer_id}` }, a.customer_id)],
      ['Type', a.type], ['Status', a.status], ['Balance', `${a.balance} ${a.currency}`], ['Available', `${a.available} ${a.currency}`],
      ['Overdraft limit', `${a.overdraft_limit} ${a.currency}`], ['Opened', when(a.opened_at)]]));
    actions.replaceChildren(...[['freeze', 'ACTIVE'], ['unfreeze', 'FROZEN'], ['close', null]]
      .filter(([step, from]) => can('POST', `/accounts/{id}/${step}`) && a.status !== 'CLOSED' && (from === null || a.status === from))
      .map(([step]) => h('button', { type: 'button', class: step === 'close' ? 'danger' : 'plain',
        onclick: () => attempt(error, () => api('POST', `/accounts/${a.account_id}/${step}`)) }, `${step[0].toUpperCase()}${step.slice(1)} the account`)));
    const q = new URLSearchParams();
    if (from.value) q.set('from', from.value);
    if (to.value) q.set('to', to.value);
    if (kind.value) q.set('kind', kind.value);
    const rows = await allPages(`/accounts/${a.account_id}/transactions`, q);
    lines.replaceChildren(...rows.map((l) => h('tr', { 'data-line': l.line_id },
      h('td', {}, l.value_date), h('td', {}, l.kind), h('td', {}, l.reference),
      h('td', { class: 'num' }, `${l.direction === 'debit' ? '−' : '+'}${l.amount}`), h('td', { class: 'num' }, h('span', { class: 'balance-after' }, l.balance_after)),
      h('td', {}, l.counterparty ?? '—'),
      h('td', {}, mayReverse && l.kind !== 'reversal'
        ? h('button', { type: 'button', class: 'plain', 'aria-label': `Reverse ${l.reference}`,
          onclick: () => attempt(error, () => api('POST', `/transactions/${l.transaction_id}/reverse`)) }, 'Reverse')
        : null))));
  };
  const postKind = h('select', { name: 'post_kind' }, ...['deposit', 'withdrawal', 'fee', 'interest', 'transfer'].map((k) => h('option', { value: k }, k)));
  const amount = h('input', { name: 'amount', required: true, inputmode: 'decimal', placeholder: '10.00' });
  const target = h('input', { name: 'to_account', placeholder: 'account id (transfers)' });
  const ref = h('input', { name: 'reference', required: true, value: reference() });
  const date = h('input', { name: 'value_date', type: 'date', required: true, value: today() });
  const post = can('POST', '/transactions')
    ? h('form', { class: 'row', 'aria-label': 'Post a transaction', onsubmit: async (e) => {
      e.preventDefault();
      const common = { amount: amount.value, currency: a.currency, reference: ref.value, value_date: date.value };
      const body = postKind.value === 'transfer'
        ? { kind: 'transfer', from: a.account_id, to: target.value, ...common }
        : { kind: postKind.value, account_id: a.account_id, ...common };
      if (await attempt(error, () => api('POST', '/transactions', body))) {
        amount.value = '';
        ref.value = reference();
      }
    } }, field('Kind', postKind), field('Amount', amount), field('To account', target), field('Reference', ref), field('Value date', date),
    h('button', { type: 'submit' }, 'Post'))
    : null;
  const filters = h('form', { class: 'row', 'aria-label': 'Filter the log', onsubmit: (e) => { e.preventDefault(); attempt(error, load); } },
    field('From', from), field('To', to), field('Kind', kind), h('button', { class: 'plain', type: 'submit' }, 'Filter'));
  show('Account', error, summary, actions, post ? h('h2', {}, 'Post') : null, post,
    h('h2', {}, 'Transaction log'), filters,
    table('Transaction log', ['Value date', 'Kind', 'Reference', 'Amount', 'Balance after', 'Counterparty', ''], lines));
  await load();
  reloadOn([`account-${id}`, 'transaction-'], load);
}

/** `#/accounts`: the accounts are a customer's; pick the customer first. */
export async function accounts(id) {
  if (id) return account(id);
  const body = h('tbody');
  show('Accounts', h('p', {}, 'Accounts are opened for a customer: pick one.'), table('Customers', ['Customer', 'Accounts'], body));
  const all = await allPages('/customers');
  body.replaceChildren(...all.map((c) => h('tr', {}, h('td', {}, h('a', { href: `#/customers/${c.customer_id}` }, c.name)),
    h('td', {}, h('span', { 'data-accounts': c.customer_id }, '…')))));
  for (const c of all.slice(0, 100)) {
    const n = (await allPages(`/customers/${c.customer_id}/accounts`)).length;
    const cell = body.querySelector(`[data-accounts="${CSS.escape(c.customer_id)}"]`);
    if (cell) cell.textContent = String(n);
  }
}
