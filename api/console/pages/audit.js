// The audit timeline for ADMINs: the tenant's events filtered by stream, type, actor and
// time; an event's whole envelope; a stream's state as of any version.

import { h, field, show, errorBox, attempt, table, when } from '../lib.js';
import { api } from '../session.js';

/** A local datetime-local value as RFC 3339. */
const instant = (v) => (v ? new Date(v).toISOString() : null);

export async function audit() {
  const error = errorBox();
  const stream = h('input', { name: 'stream', placeholder: 'task-…' });
  const type = h('input', { name: 'type', placeholder: 'TaskCreated' });
  const actor = h('input', { name: 'actor', placeholder: 'user id or system:…' });
  const since = h('input', { name: 'since', type: 'datetime-local' });
  const until = h('input', { name: 'until', type: 'datetime-local' });
  const body = h('tbody', { id: 'timeline' });
  const detail = h('section', { id: 'event', 'aria-label': 'The chosen event' });
  const more = h('button', { type: 'button', class: 'plain', hidden: true }, 'Older events');
  let cursor = null;
  const query = () => {
    const q = new URLSearchParams();
    for (const [k, v] of [['stream', stream.value], ['type', type.value], ['actor', actor.value], ['since', instant(since.value)], ['until', instant(until.value)]]) {
      if (v) q.set(k, v);
    }
    q.set('limit', '50');
    if (cursor) q.set('cursor', cursor);
    return q;
  };
  const state = async (e) => {
    const s = await api('GET', `/audit/streams/${encodeURIComponent(e.stream_id)}/state?version=${e.version}`);
    detail.append(h('h3', {}, `${e.stream_id} as of version ${e.version}`), h('pre', { class: 'json', id: 'state', tabindex: 0, 'aria-label': 'State' }, JSON.stringify(s, null, 2)));
  };
  const open = (e) => {
    detail.replaceChildren(h('h2', {}, `${e.event_type} · ${e.stream_id} v${e.version}`),
      h('pre', { class: 'json', id: 'envelope', tabindex: 0, 'aria-label': 'Envelope' }, JSON.stringify(e, null, 2)),
      h('button', { type: 'button', class: 'plain', onclick: () => attempt(error, () => state(e)) }, 'State as of this version'));
    detail.focus();
  };
  const load = async (append) => {
    if (!append) cursor = null;
    const page = await api('GET', `/audit/events?${query()}`);
    const rows = page.items.map((e) => h('tr', {},
      h('td', {}, e.position), h('td', {}, when(e.recorded_at)),
      h('td', {}, h('button', { type: 'button', class: 'link', 'aria-label': `Show ${e.event_type} of ${e.stream_id} v${e.version}`, onclick: () => open(e) }, e.event_type)),
      h('td', {}, e.stream_id), h('td', {}, e.version), h('td', {}, e.actor)));
    if (append) body.append(...rows);
    else body.replaceChildren(...rows);
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener('click', () => attempt(error, () => load(true)));
  detail.setAttribute('tabindex', '-1');
  const filters = h('form', { class: 'row', 'aria-label': 'Filter the timeline', onsubmit: (e) => { e.preventDefault(); attempt(error, () => load(false)); } },
    field('Stream', stream), field('Event type', type), field('Actor', actor), field('Since', since), field('Until', until),
    h('button', { class: 'plain', type: 'submit' }, 'Filter'));
  show('Audit timeline', filters, error, table('Events', ['Position', 'Recorded', 'Event', 'Stream', 'Version', 'Actor'], body), more, detail);
  await load(false);
}
