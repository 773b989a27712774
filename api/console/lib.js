// The console's DOM helpers. Everything a user typed is rendered as text (text nodes and
// attributes set one by one); nothing is ever parsed as HTML.

/** An element with attributes (`on…` functions become listeners) and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An SVG element (charts): the same as `h` in the SVG namespace. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A labelled control: the label's text names it for screen readers. */
export function field(label, input) {
  return h('label', {}, label, input);
}

/** A choice of `values` (the first `''` entry, if any, reads `any`). */
export function choice(name, values, selected = '') {
  return h('select', { name }, ...values.map((v) => h('option', { value: v, selected: v === selected }, v === '' ? 'any' : v)));
}

/** The status line at the bottom of the page (polite live region). */
export function say(text) {
  document.getElementById('status').textContent = text;
}

/** Replaces the page's content, names the page after `title` and moves focus to it. */
export function show(title, ...content) {
  const main = document.getElementById('main');
  main.replaceChildren(h('h1', {}, title), ...content);
  document.title = `${title} · Chronicle`;
  main.focus();
}

/** The paragraph a form's errors are announced in. */
export function errorBox() {
  return h('p', { class: 'error', role: 'alert', id: 'form-error' });
}

/** Runs `fn`, showing its error (or clearing the last one) in `box`. */
export async function attempt(box, fn) {
  try {
    const out = await fn();
    box.textContent = '';
    return out;
  } catch (err) {
    box.textContent = err.message;
    return undefined;
  }
}

/** A definition list of `pairs` ([term, value]). */
export function facts(label, pairs) {
  return h('dl', { class: 'facts', 'aria-label': label }, ...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v instanceof Node ? v : String(v ?? '—'))]));
}

/** A table with a caption, column headings and `body` (a tbody the page fills). */
export function table(caption, columns, body) {
  return h('table', {}, h('caption', { class: 'muted' }, caption),
    h('thead', {}, h('tr', {}, ...columns.map((c) => h('th', { scope: 'col' }, c)))), body);
}

/** Money as the API shows it: `{amount, currency}`, or a decimal string. */
export const money = (a) => (a && typeof a === 'object' ? `${a.amount} ${a.currency}` : String(a ?? ''));

/** A time as the reader's locale shows it. */
export const when = (t) => (t ? new Date(t).toLocaleString() : '—');
