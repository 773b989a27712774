// Chronicle console: a client of the public API only (the same routes /openapi.json
// documents), kept live by GET /events/stream. Everything a user typed is rendered as text
// (text nodes and textContent; nothing is ever parsed as HTML). The access token lives in
// this module's memory only, never in web storage; the refresh token is an HttpOnly,
// SameSite=Strict cookie for /auth that no script can read (X-Refresh-Cookie: 1), which a
// reload exchanges for a new access token.

const session = { access: null, role: null, user: null, tenant: null };
const COOKIE = { 'X-Refresh-Cookie': '1' };
let live = null; // the AbortController of the open event stream

// ---------------------------------------------------------------- DOM helpers

/** An element with attributes (`on…` functions become listeners) and children (strings become text). */
function h(tag, attrs = {}, ...children) {
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

function field(label, input) {
  return h('label', {}, label, input);
}

function say(text) {
  document.getElementById('status').textContent = text;
}

function show(title, ...content) {
  const main = document.getElementById('main');
  main.replaceChildren(h('h1', {}, title), ...content);
  document.title = `${title} · Chronicle`;
  main.focus();
}

function problemText(p) {
  if (!p || typeof p !== 'object') return 'The request failed.';
  return [p.title, p.detail].filter(Boolean).join(': ');
}

// ---------------------------------------------------------------- the API

async function api(method, path, body, retried = false) {
  const headers = { Accept: 'application/json', ...(path.startsWith('/auth/') || path === '/tenants' ? COOKIE : {}) };
  if (session.access) headers.Authorization = `Bearer ${session.access}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401 && session.access && !retried && (await refresh())) {
    return api(method, path, body, true);
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    const e = new Error(problemText(data));
    e.status = res.status;
    e.problem = data;
    throw e;
  }
  return data;
}

async function refresh() {
  try {
    const res = await fetch('/auth/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...COOKIE },
      body: '{}',
    });
    if (!res.ok) return false;
    signedIn(await res.json());
    return true;
  } catch {
    return false;
  }
}

function signedIn(t) {
  session.access = t.access_token;
  session.role = t.role;
  session.user = t.user_id;
  session.tenant = t.tenant_id;
}

const isAdmin = () => session.role === 'ADMIN' || session.role === 'OWNER';

// ---------------------------------------------------------------- live events

/** Reads GET /events/stream (fetch, so that the token goes in a header) until aborted,
 *  resuming after the last id on reconnect; calls `on(type, data)` per event. */
async function stream(on) {
  const ctl = new AbortController();
  live = ctl;
  let lastId = null;
  while (!ctl.signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${session.access}` };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const res = await fetch('/events/stream', { headers, signal: ctl.signal });
      if (res.status === 401 && !(await refresh())) return;
      if (!res.ok) throw new Error(`stream ${res.status}`);
      say('Live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let type = null;
          const data = [];
          for (const line of block.split('\n')) {
            const i = line.indexOf(':');
            const name = i < 0 ? line : line.slice(0, i);
            const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (name === 'event') type = v;
            else if (name === 'data') data.push(v);
            else if (name === 'id') lastId = v;
          }
          if (type && data.length) on(type, JSON.parse(data.join('\n')));
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
      say('Reconnecting…');
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function stopStream() {
  if (live) live.abort();
  live = null;
}

// ---------------------------------------------------------------- pages

function nav(current) {
  const links = session.access
    ? [['#/dashboard', 'Dashboard'], ['#/tasks', 'Tasks'], ['#/shop', 'Products and orders'], ['#/ai', 'AI assistant'], ['#/settings', 'Settings']]
    : [['#/signin', 'Sign in'], ['#/signup', 'Sign up']];
  document.getElementById('nav').replaceChildren(
    ...links.map(([href, text]) => h('a', { href, 'aria-current': href === current ? 'page' : null }, text)),
    session.access ? h('button', { class: 'plain', type: 'button', onclick: signOut }, 'Sign out') : null,
  );
  document.getElementById('who').textContent = session.access ? `${session.user} (${session.role}) · ${session.tenant}` : '';
}

async function signOut() {
  stopStream();
  try {
    await api('POST', '/auth/signout', {});
  } catch {
    // Signed out here whatever the server says.
  }
  Object.assign(session, { access: null, role: null, user: null, tenant: null });
  location.hash = '#/signin';
}

function errorBox() {
  return h('p', { class: 'error', role: 'alert', id: 'form-error' });
}

function signInPage() {
  const tenant = h('input', { name: 'tenant_id', required: true, autocomplete: 'organization' });
  const email = h('input', { name: 'email', type: 'email', required: true, autocomplete: 'username' });
  const password = h('input', { name: 'password', type: 'password', required: true, autocomplete: 'current-password' });
  const error = errorBox();
  const form = h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault();
    try {
      signedIn(await api('POST', '/auth/signin', { tenant_id: tenant.value, email: email.value, password: password.value }));
      location.hash = '#/dashboard';
    } catch (err) {
      error.textContent = err.message;
    }
  } }, field('Tenant id', tenant), field('Email', email), field('Password', password),
  h('button', { type: 'submit' }, 'Sign in'), error);
  show('Sign in', form);
}

function signUpPage() {
  const company = h('input', { name: 'company_name', required: true, autocomplete: 'organization' });
  const email = h('input', { name: 'admin_email', type: 'email', required: true, autocomplete: 'username' });
  const password = h('input', { name: 'admin_password', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' });
  const tier = h('select', { name: 'tier' }, ...['basic', 'premium', 'enterprise'].map((t) => h('option', { value: t }, t)));
  const error = errorBox();
  const form = h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault();
    try {
      // The tenant's first user: its OWNER, signed in by the answer.
      signedIn(await api('POST', '/tenants', { company_name: company.value, admin_email: email.value, admin_password: password.value, tier: tier.value }));
      location.hash = '#/dashboard';
    } catch (err) {
      error.textContent = err.message;
    }
  } }, field('Company name', company), field('Your email', email), field('Password (12 characters or more)', password),
  field('Tier', tier), h('button', { type: 'submit' }, 'Sign up'), error);
  show('Sign up a tenant', form);
}

async function allTasks(query = '') {
  const items = [];
  let cursor = null;
  do {
    const sep = query ? '&' : '';
    const page = await api('GET', `/tasks?${query}${sep}limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < 1000);
  return items;
}

async function dashboardPage() {
  const cards = h('div', { class: 'cards' });
  const activity = h('ul', { class: 'activity', 'aria-label': 'Latest activity' });
  show('Dashboard', cards, h('h2', {}, 'Latest activity'), activity);
  const count = async () => {
    const tasks = await allTasks();
    const by = (s) => tasks.filter((t) => t.status === s).length;
    cards.replaceChildren(
      ...[['Tasks', tasks.length], ['Open', by('OPEN')], ['In progress', by('IN_PROGRESS')], ['Done', by('DONE')]]
        .map(([label, n]) => h('div', { class: 'card' }, h('span', { class: 'n' }, n), label)),
    );
  };
  await count();
  stream((type, e) => {
    activity.prepend(h('li', {}, `${new Date(e.recorded_at).toLocaleTimeString()} ${type} ${e.stream_id} by ${e.actor}`));
    while (activity.children.length > 20) activity.lastChild.remove();
    if (e.stream_id.startsWith('task-')) count();
  });
}

const STATUSES = ['OPEN', 'IN_PROGRESS', 'DONE'];

async function tasksPage() {
  const status = h('select', { name: 'status' }, h('option', { value: '' }, 'any'), ...STATUSES.map((s) => h('option', { value: s }, s)));
  const assignee = h('input', { name: 'assigned_to', placeholder: 'user id' });
  const body = h('tbody');
  const error = errorBox();
  const load = async () => {
    const q = new URLSearchParams();
    if (status.value) q.set('status', status.value);
    if (assignee.value) q.set('assigned_to', assignee.value);
    try {
      const tasks = await allTasks(q.toString());
      body.replaceChildren(...tasks.map(row));
      error.textContent = '';
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const row = (t) => {
    const move = h('select', { 'aria-label': `Status of ${t.title}`, onchange: async () => {
      try {
        await api('PUT', `/tasks/${t.task_id}`, { status: move.value });
      } catch (err) {
        error.textContent = err.message;
        load();
      }
    } }, ...STATUSES.map((s) => h('option', { value: s, selected: s === t.status }, s)));
    return h('tr', { 'data-task': t.task_id },
      h('td', {}, h('span', { class: 'title' }, t.title), t.description ? h('div', { class: 'muted' }, t.description) : null),
      h('td', {}, move),
      h('td', {}, t.assigned_to ?? '—'),
      h('td', {}, t.created_by),
      h('td', {}, isAdmin()
        ? h('button', { class: 'danger', type: 'button', 'aria-label': `Delete ${t.title}`, onclick: async () => {
          try {
            await api('DELETE', `/tasks/${t.task_id}`);
          } catch (err) {
            error.textContent = err.message;
          }
        } }, 'Delete')
        : null));
  };
  const title = h('input', { name: 'title', required: true, maxlength: 200 });
  const description = h('input', { name: 'description' });
  const assign = h('input', { name: 'new_assigned_to', placeholder: 'user id' });
  const create = h('form', { class: 'row', 'aria-label': 'New task', onsubmit: async (e) => {
    e.preventDefault();
    const task = { title: title.value };
    if (description.value) task.description = description.value;
    if (assign.value) task.assigned_to = assign.value;
    try {
      await api('POST', '/tasks', task);
      create.reset();
    } catch (err) {
      error.textContent = err.message;
    }
  } }, field('Title', title), field('Description', description), field('Assign to', assign), h('button', { type: 'submit' }, 'Create task'));
  const filters = h('form', { class: 'row', 'aria-label': 'Filter tasks', onsubmit: (e) => { e.preventDefault(); load(); } },
    field('Status', status), field('Assignee', assignee), h('button', { class: 'plain', type: 'submit' }, 'Filter'));
  const table = h('table', {}, h('caption', { class: 'muted' }, 'Tasks'),
    h('thead', {}, h('tr', {}, ...['Task', 'Status', 'Assignee', 'Created by', ''].map((c) => h('th', { scope: 'col' }, c)))), body);
  show('Tasks', create, filters, error, table);
  await load();
  stream((type, e) => {
    if (e.stream_id.startsWith('task-')) load();
  });
}

async function allPages(path) {
  const items = [];
  let cursor = null;
  do {
    const page = await api('GET', `${path}?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < 1000);
  return items;
}

const money = (a) => (a && typeof a === 'object' ? `${a.amount} ${a.currency}` : String(a ?? ''));

const NEXT = { pending: ['confirm', 'cancel'], confirmed: ['ship', 'cancel'], shipped: ['deliver'] };

async function shopPage() {
  const error = errorBox();
  const products = h('tbody', { id: 'products' });
  const orders = h('tbody', { id: 'orders' });
  const pick = h('select', { name: 'product_id', required: true });
  const act = async (fn) => {
    try {
      await fn();
      error.textContent = '';
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const load = async () => {
    const [ps, os] = await Promise.all([allPages('/products'), allPages('/orders')]);
    products.replaceChildren(...ps.map((p) => h('tr', { 'data-product': p.product_id },
      h('td', {}, h('span', { class: 'name' }, p.name)), h('td', {}, p.sku), h('td', {}, money(p.price)),
      h('td', {}, h('span', { class: 'stock' }, p.inventory)))));
    const chosen = pick.value;
    pick.replaceChildren(...ps.map((p) => h('option', { value: p.product_id, selected: p.product_id === chosen }, `${p.name} (${p.inventory} in stock)`)));
    orders.replaceChildren(...os.map((o) => h('tr', { 'data-order': o.order_id },
      h('td', {}, o.customer_email),
      h('td', {}, o.items.map((i) => `${i.quantity} × ${i.product_name}`).join(', ')),
      h('td', {}, money(o.total_amount)),
      h('td', {}, h('span', { class: 'order-status' }, o.status)),
      h('td', {}, ...(NEXT[o.status] ?? [])
        .filter((step) => step === 'cancel' || isAdmin())
        .map((step) => h('button', { type: 'button', class: step === 'cancel' ? 'danger' : 'plain',
          'aria-label': `${step} the order of ${o.customer_email}`,
          onclick: () => act(() => api('POST', `/orders/${o.order_id}/${step}`)) }, step))))));
  };
  const name = h('input', { name: 'name', required: true });
  const sku = h('input', { name: 'sku', required: true });
  const price = h('input', { name: 'price', required: true, inputmode: 'decimal' });
  const category = h('input', { name: 'category', required: true });
  const stock = h('input', { name: 'inventory', type: 'number', min: 0, value: 0 });
  const newProduct = isAdmin()
    ? h('form', { class: 'row', 'aria-label': 'New product', onsubmit: (e) => {
      e.preventDefault();
      act(async () => {
        await api('POST', '/products', { name: name.value, sku: sku.value, price: price.value, category: category.value, inventory: Number(stock.value) });
        e.target.reset();
      });
    } }, field('Name', name), field('SKU', sku), field('Price', price), field('Category', category), field('Stock', stock),
    h('button', { type: 'submit' }, 'Add product'))
    : null;
  const quantity = h('input', { name: 'quantity', type: 'number', min: 1, value: 1, required: true });
  const email = h('input', { name: 'customer_email', type: 'email', required: true });
  const street = h('input', { name: 'street', required: true });
  const city = h('input', { name: 'city', required: true });
  const region = h('input', { name: 'state', required: true });
  const zip = h('input', { name: 'zip', required: true });
  const place = h('form', { class: 'row', 'aria-label': 'Place an order', onsubmit: (e) => {
    e.preventDefault();
    act(() => api('POST', '/orders', {
      customer_email: email.value,
      items: [{ product_id: pick.value, quantity: Number(quantity.value) }],
      shipping_address: { street: street.value, city: city.value, state: region.value, zip: zip.value },
    }));
  } }, field('Product', pick), field('Quantity', quantity), field('Customer email', email), field('Street', street),
  field('City', city), field('State', region), field('ZIP', zip), h('button', { type: 'submit' }, 'Place order'));
  const head = (...cols) => h('thead', {}, h('tr', {}, ...cols.map((c) => h('th', { scope: 'col' }, c))));
  show('Products and orders', error,
    h('h2', {}, 'Catalogue'), newProduct,
    h('table', {}, h('caption', { class: 'muted' }, 'Products'), head('Product', 'SKU', 'Price', 'Stock'), products),
    h('h2', {}, 'Orders'), place,
    h('table', {}, h('caption', { class: 'muted' }, 'Orders'), head('Customer', 'Items', 'Total', 'Status', 'Actions'), orders));
  await load();
  stream((type, e) => {
    if (e.stream_id.startsWith('product-') || e.stream_id.startsWith('order-')) load();
  });
}

/** A definition list of `pairs` ([term, value]). */
function facts(label, pairs) {
  return h('dl', { class: 'facts', 'aria-label': label }, ...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
}

async function settingsPage() {
  const error = errorBox();
  const t = await api('GET', `/tenants/${session.tenant}`);
  const limits = Object.entries(t.limits).map(([k, v]) => [k.replaceAll('_', ' '), v]);
  const users = h('tbody', { id: 'users' });
  const loadUsers = async () => {
    const all = await allPages('/users');
    users.replaceChildren(...all.map((u) => h('tr', {}, h('td', {}, u.email), h('td', {}, u.role),
      h('td', {}, u.disabled ? 'disabled' : 'active'))));
  };
  const issued = h('p', { id: 'invitation', role: 'status' });
  const role = h('select', { name: 'role' }, h('option', { value: 'MEMBER' }, 'MEMBER'), h('option', { value: 'ADMIN' }, 'ADMIN'));
  const invite = isAdmin()
    ? h('form', { class: 'row', 'aria-label': 'Invite a user', onsubmit: async (e) => {
      e.preventDefault();
      try {
        const inv = await api('POST', '/users/invitations', { role: role.value });
        issued.textContent = `Invitation code for a ${inv.role}: ${inv.code} (expires ${new Date(inv.expires_at).toLocaleString()})`;
      } catch (err) {
        error.textContent = err.message;
      }
    } }, field('Role', role), h('button', { type: 'submit' }, 'Invite'))
    : null;
  const connections = h('div', { id: 'connections' });
  show('Settings', error,
    h('h2', {}, 'Tenant'),
    facts('Tenant', [['Company', t.company_name], ['Tenant id', t.tenant_id], ['Tier', t.tier], ['Status', t.status],
      ['AI tokens this month', t.usage.ai_tokens]]),
    h('h2', {}, `Limits of the ${t.tier} tier`), facts('Limits', limits),
    h('h2', {}, 'Users'),
    h('table', {}, h('caption', { class: 'muted' }, 'Users'),
      h('thead', {}, h('tr', {}, ...['Email', 'Role', 'State'].map((c) => h('th', { scope: 'col' }, c)))), users),
    invite, issued,
    isAdmin() ? h('h2', {}, 'Connections') : null, connections);
  await loadUsers();
  if (isAdmin()) {
    // Shown without their secrets: the API never returns them.
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
}

async function aiPage() {
  const prompt = h('textarea', { name: 'prompt', required: true, rows: 3, cols: 60 });
  const error = errorBox();
  const usage = h('p', { id: 'ai-usage', class: 'muted' });
  const list = h('ol', { id: 'ai-queries', 'aria-label': 'Your queries, newest first' });
  const load = async () => {
    const page = await api('GET', '/ai/queries?limit=50');
    list.replaceChildren(...page.items.map((q) => h('li', { 'data-query': q.query_id },
      h('p', {}, h('strong', {}, 'You: '), h('span', { class: 'prompt' }, q.prompt)),
      h('p', {}, h('span', { class: 'ai-status' }, q.status),
        q.usage ? ` · ${q.usage.total_tokens} tokens` : '',
        q.error ? h('span', { class: 'error' }, ` · ${q.error}`) : ''),
      q.answer ? h('p', {}, h('strong', {}, 'Answer: '), h('span', { class: 'answer' }, q.answer)) : null)));
    try {
      const t = await api('GET', `/tenants/${session.tenant}`);
      usage.textContent = `This month: ${t.usage.ai_tokens} of ${t.limits.ai_tokens_per_month} tokens (${t.tier}).`;
    } catch {
      usage.textContent = '';
    }
  };
  const form = h('form', { class: 'stack', 'aria-label': 'Ask', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api('POST', '/ai/query', { prompt: prompt.value });
      form.reset();
      error.textContent = '';
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  } }, field('Ask the assistant', prompt), h('button', { type: 'submit' }, 'Ask'), error);
  show('AI assistant', form, usage, list);
  await load();
  stream((type, e) => {
    if (e.stream_id.startsWith('aiquery-')) load();
  });
}

// ---------------------------------------------------------------- routing

const pages = { '#/signin': signInPage, '#/signup': signUpPage, '#/dashboard': dashboardPage, '#/tasks': tasksPage, '#/shop': shopPage, '#/ai': aiPage, '#/settings': settingsPage };
const open = new Set(['#/signin', '#/signup']);

function route() {
  stopStream();
  let hash = location.hash || '#/dashboard';
  if (!pages[hash]) hash = '#/dashboard';
  if (!session.access && !open.has(hash)) hash = '#/signin';
  if (location.hash !== hash) {
    location.hash = hash;
    return;
  }
  nav(hash);
  say('');
  Promise.resolve(pages[hash]()).catch((err) => {
    if (err.status === 401) {
      session.access = null;
      location.hash = '#/signin';
    } else {
      say(err.message);
    }
  });
}

window.addEventListener('hashchange', route);
// A reload: the refresh cookie, if any, signs the page in again.
refresh().finally(route);
