// The customer portal (seed 001): a CUSTOMER's cases and documents, opening a case, and
// downloading a document through its signed link; live as agents answer in Salesforce.

import { h, field, show, errorBox, attempt, choice, table, when } from '../lib.js';
import { api, allPages, download, session, reloadOn } from '../session.js';

const STATUSES = ['NEW', 'WORKING', 'ESCALATED', 'CLOSED'];

/** Bytes as people read them. */
function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

export async function portal(id = session.customer) {
  if (!id) throw new Error('The portal is for the contacts of a customer (a CUSTOMER user).');
  const base = `/customer/${encodeURIComponent(id)}`;
  const error = errorBox();
  const cases = h('tbody', { id: 'cases' });
  const documents = h('tbody', { id: 'documents' });
  const status = choice('status', ['', ...STATUSES]);
  const load = async () => {
    const q = new URLSearchParams();
    if (status.value) q.set('status', status.value);
    const [cs, ds] = await Promise.all([allPages(`${base}/cases`, q), allPages(`${base}/documents`)]);
    cases.replaceChildren(...cs.map((c) => h('tr', { 'data-case': c.case_id },
      h('td', {}, h('span', { class: 'subject' }, c.subject), c.description ? h('div', { class: 'muted' }, c.description) : null,
        ...c.comments.map((m) => h('div', { class: 'comment' }, h('strong', {}, `${m.by}: `), m.body))),
      h('td', {}, c.priority), h('td', {}, h('span', { class: 'case-status' }, c.status)),
      h('td', {}, c.salesforce.state), h('td', {}, when(c.created_at)))));
    documents.replaceChildren(...ds.map((d) => {
      const name = d.file_extension ? `${d.title}.${d.file_extension}` : d.title;
      return h('tr', { 'data-document': d.document_id },
        h('td', {}, h('span', { class: 'title' }, d.title)), h('td', {}, d.file_extension ?? '—'), h('td', {}, size(d.content_size)),
        h('td', {}, when(d.modified_at)),
        h('td', {}, h('button', { type: 'button', class: 'plain', 'aria-label': `Download ${d.title}`, onclick: async () => {
          const got = await attempt(error, () => download(`${base}/documents/${d.document_id}/download`, name));
          if (got !== undefined) done.textContent = `Downloaded ${name} (${size(got)}).`;
        } }, 'Download')));
    }));
  };
  const done = h('p', { id: 'downloaded', role: 'status' });
  const subject = h('input', { name: 'subject', required: true, maxlength: 255 });
  const description = h('textarea', { name: 'description', rows: 3, cols: 50 });
  const priority = h('select', { name: 'priority' }, ...['low', 'medium', 'high'].map((p) => h('option', { value: p, selected: p === 'medium' }, p)));
  const open = h('form', { class: 'stack', 'aria-label': 'Open a case', onsubmit: async (e) => {
    e.preventDefault();
    const body = { subject: subject.value, priority: priority.value };
    if (description.value) body.description = description.value;
    if (await attempt(error, () => api('POST', `${base}/cases`, body))) {
      open.reset();
      await load();
    }
  } }, field('Subject', subject), field('Description', description), field('Priority', priority), h('button', { type: 'submit' }, 'Open case'));
  const filters = h('form', { class: 'row', 'aria-label': 'Filter cases', onsubmit: (e) => { e.preventDefault(); attempt(error, load); } },
    field('Status', status), h('button', { class: 'plain', type: 'submit' }, 'Filter'));
  show('Your cases and documents', error,
    h('h2', {}, 'Open a case'), open,
    h('h2', {}, 'Cases'), filters, table('Cases', ['Case', 'Priority', 'Status', 'Salesforce', 'Opened'], cases),
    h('h2', {}, 'Documents'), done, table('Documents', ['Document', 'Type', 'Size', 'Modified', ''], documents));
  await load();
  reloadOn(['case-', 'document-'], load);
}
