// Analytics as charts: revenue and orders per day, orders by status, tasks opened and
// closed, AI tokens. Each chart is SVG whose bars carry their numbers (shown on hover),
// and is followed by a table of the same numbers for screen readers.

import { h, svg, field, show, errorBox, attempt, table } from '../lib.js';
import { api, reloadOn } from '../session.js';

const W = 640;
const H = 180;
const PAD = 28;
const day = (d) => d.toISOString().slice(0, 10);

/** A bar chart of `rows` (label, then one value per series), bars grouped per row. */
function chart(id, title, series, rows, unit = '') {
  const max = Math.max(1, ...rows.flatMap((r) => r.values));
  const band = (W - PAD) / Math.max(1, rows.length);
  const bar = Math.max(1, (band - 4) / series.length);
  const y = (v) => H - PAD - ((H - 2 * PAD) * v) / max;
  const bars = rows.flatMap((r, i) => r.values.map((v, s) => svg('rect', {
    class: `chart-bar s${s}`, x: (PAD + i * band + 2 + s * bar).toFixed(1), y: y(v).toFixed(1),
    width: (bar - 1).toFixed(1), height: (H - PAD - y(v)).toFixed(1),
  }, svg('title', {}, `${r.label} · ${series[s]}: ${v}${unit}`))));
  const axis = [
    svg('line', { class: 'axis', x1: PAD, y1: H - PAD, x2: W, y2: H - PAD }),
    svg('text', { class: 'tick', x: 2, y: PAD }, String(max)),
    svg('text', { class: 'tick', x: 2, y: H - PAD }, '0'),
    // A few rows (categories): each labelled under its bars; many (days): the first and last.
    ...(rows.length <= 7
      ? rows.map((r, i) => svg('text', { class: 'tick', x: (PAD + (i + 0.5) * band).toFixed(1), y: H - 8, 'text-anchor': 'middle' }, r.label))
      : [svg('text', { class: 'tick', x: PAD, y: H - 8 }, rows[0].label),
        svg('text', { class: 'tick', x: W, y: H - 8, 'text-anchor': 'end' }, rows.at(-1).label)]),
  ];
  const legend = series.length > 1
    ? h('p', { class: 'legend', 'aria-hidden': 'true' }, ...series.map((s, i) => h('span', { class: `key s${i}` }, s)))
    : null;
  const caption = `${title}${unit ? ` (${unit.trim()})` : ''}`;
  return h('figure', { id },
    h('figcaption', {}, caption),
    svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${caption}: a bar chart; the table after it has the numbers` }, ...axis, ...bars),
    legend,
    h('div', { class: 'sr-only' }, table(caption, ['', ...series], h('tbody', {},
      ...rows.map((r) => h('tr', {}, h('th', { scope: 'row' }, r.label), ...r.values.map((v) => h('td', {}, `${v}${unit}`))))))));
}

export async function analytics() {
  const error = errorBox();
  const now = new Date();
  const from = h('input', { name: 'from', type: 'date', value: day(new Date(now.getTime() - 13 * 86400000)) });
  const to = h('input', { name: 'to', type: 'date', value: day(now) });
  const charts = h('div', { id: 'charts', class: 'charts' });
  const load = async () => {
    const q = `from=${from.value}&to=${to.value}`;
    const [daily, summary] = await Promise.all([api('GET', `/analytics/daily?${q}`), api('GET', `/analytics/summary?${q}`)]);
    const per = (f) => daily.days.map((d) => ({ label: d.date, values: f(d) }));
    const unit = ` ${daily.currency}`;
    charts.replaceChildren(
      chart('revenue', 'Revenue per day', ['Revenue'], per((d) => [Number(d.revenue.amount)]), unit),
      chart('orders', 'Orders placed per day', ['Orders'], per((d) => [d.orders_placed])),
      chart('orders-by-status', 'Orders by status', ['Orders'],
        Object.entries(summary.orders_by_status).map(([s, n]) => ({ label: s, values: [n] }))),
      chart('tasks', 'Tasks opened and closed per day', ['Opened', 'Closed'], per((d) => [d.tasks_created, d.tasks_completed])),
      chart('ai-tokens', 'AI tokens per day', ['Tokens'], per((d) => [d.ai_tokens])),
    );
  };
  const range = h('form', { class: 'row', 'aria-label': 'Range', onsubmit: (e) => { e.preventDefault(); attempt(error, load); } },
    field('From', from), field('To', to), h('button', { class: 'plain', type: 'submit' }, 'Show'));
  show('Analytics', range, error, charts);
  await load();
  reloadOn(['order-', 'task-', 'aiquery-'], load);
}
