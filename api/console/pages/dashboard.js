// The dashboard: the tenant's counts and its latest activity, live.

import { h, show } from '../lib.js';
import { allPages, can, stream } from '../session.js';

export async function dashboard() {
  const cards = h('div', { class: 'cards' });
  const activity = h('ul', { class: 'activity', 'aria-label': 'Latest activity' });
  show('Dashboard', cards, h('h2', {}, 'Latest activity'), activity);
  const count = async () => {
    const [tasks, orders, customers] = await Promise.all([
      allPages('/tasks'),
      can('GET', '/orders') ? allPages('/orders') : [],
      can('GET', '/customers') ? allPages('/customers') : [],
    ]);
    const by = (s) => tasks.filter((t) => t.status === s).length;
    cards.replaceChildren(
      ...[['Tasks', tasks.length], ['Open', by('OPEN')], ['In progress', by('IN_PROGRESS')], ['Done', by('DONE')],
        ['Orders', orders.length], ['Customers', customers.length]]
        .map(([label, n]) => h('div', { class: 'card' }, h('span', { class: 'n' }, n), label)),
    );
  };
  await count();
  stream((type, e) => {
    activity.prepend(h('li', {}, `${new Date(e.recorded_at).toLocaleTimeString()} ${type} ${e.stream_id} by ${e.actor}`));
    while (activity.children.length > 20) activity.lastChild.remove();
    if (['task-', 'order-', 'customer-'].some((p) => e.stream_id.startsWith(p))) count();
  });
}
