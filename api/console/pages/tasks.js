// Tasks (seed 004): list, filter by status and assignee, create, edit (as of the version
// shown: a change made meanwhile elsewhere is refused, not overwritten), change status;
// delete for those the API lets delete.

import { h, field, show, errorBox, attempt, choice, table } from '../lib.js';
import { api, allPages, can, reloadOn } from '../session.js';

const STATUSES = ['OPEN', 'IN_PROGRESS', 'DONE'];

export async function tasks() {
  const status = choice('status', ['', ...STATUSES]);
  const assignee = h('input', { name: 'assigned_to', placeholder: 'user id' });
  const body = h('tbody');
  const error = errorBox();
  // While a task is edited, live changes wait (a re-render would drop what is typed).
  let edited = null;
  const load = async () => {
    if (edited) return;
    const q = new URLSearchParams();
    if (status.value) q.set('status', status.value);
    if (assignee.value) q.set('assigned_to', assignee.value);
    await attempt(error, async () => body.replaceChildren(...(await allPages('/tasks', q)).map(row)));
  };
  const mayEdit = can('PUT', '/tasks/{id}');
  const mayDelete = can('DELETE', '/tasks/{id}');
  const row = (t) => {
    const move = h('select', { 'aria-label': `Status of ${t.title}`, onchange: async () => {
      if (!(await attempt(error, () => api('PUT', `/tasks/${t.task_id}`, { status: move.value }).then(() => true)))) load();
    } }, ...STATUSES.map((s) => h('option', { value: s, selected: s === t.status }, s)));
    const cell = h('td', {}, h('span', { class: 'title' }, t.title), t.description ? h('div', { class: 'muted' }, t.description) : null);
    return h('tr', { 'data-task': t.task_id },
      cell,
      h('td', {}, move),
      h('td', {}, t.assigned_to ?? '—'),
      h('td', {}, t.created_by),
      h('td', { class: 'actions' },
        mayEdit ? h('button', { type: 'button', class: 'plain', 'aria-label': `Edit ${t.title}`, onclick: () => editing(cell, t) }, 'Edit') : null,
        mayDelete
          ? h('button', { class: 'danger', type: 'button', 'aria-label': `Delete ${t.title}`,
            onclick: () => attempt(error, () => api('DELETE', `/tasks/${t.task_id}`)) }, 'Delete')
          : null));
  };
  /** The title cell as a form: title, description and assignee, saved as of `t.version`. */
  const editing = (cell, t) => {
    const title = h('input', { name: 'edit_title', required: true, maxlength: 200, value: t.title });
    const description = h('input', { name: 'edit_description', value: t.description ?? '' });
    const assignee = h('input', { name: 'edit_assigned_to', value: t.assigned_to ?? '', placeholder: 'user id' });
    const form = h('form', { class: 'stack', 'aria-label': `Edit ${t.title}`, onsubmit: async (e) => {
      e.preventDefault();
      const change = { title: title.value, description: description.value };
      if (assignee.value !== (t.assigned_to ?? '')) change.assigned_to = assignee.value || null;
      const saved = await attempt(error, () => api('PUT', `/tasks/${t.task_id}`, change, { 'If-Match': `"${t.version}"` }));
      if (saved) done();
    } }, field('Title', title), field('Description', description), field('Assignee', assignee),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Save'), h('button', { type: 'button', class: 'plain', onclick: () => done() }, 'Cancel')));
    const done = () => {
      edited = null;
      return load();
    };
    edited = t.task_id;
    cell.replaceChildren(form);
    title.focus();
  };
  const title = h('input', { name: 'title', required: true, maxlength: 200 });
  const description = h('input', { name: 'description' });
  const assign = h('input', { name: 'new_assigned_to', placeholder: 'user id' });
  const create = h('form', { class: 'row', 'aria-label': 'New task', onsubmit: async (e) => {
    e.preventDefault();
    const task = { title: title.value };
    if (description.value) task.description = description.value;
    if (assign.value) task.assigned_to = assign.value;
    if (await attempt(error, () => api('POST', '/tasks', task))) create.reset();
  } }, field('Title', title), field('Description', description), field('Assign to', assign), h('button', { type: 'submit' }, 'Create task'));
  const filters = h('form', { class: 'row', 'aria-label': 'Filter tasks', onsubmit: (e) => { e.preventDefault(); load(); } },
    field('Status', status), field('Assignee', assignee), h('button', { class: 'plain', type: 'submit' }, 'Filter'));
  show('Tasks', create, filters, error, table('Tasks', ['Task', 'Status', 'Assignee', 'Created by', ''], body));
  await load();
  reloadOn(['task-'], load);
}
