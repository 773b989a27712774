// Products and orders (seed 003): the catalogue and its stock, new products, placing an
// order, moving it through its workflow, cancelling; each action shown only to the roles
// the API lets take it.

import { h, field, show, errorBox, attempt, table, money } from '../lib.js';
import { api, allPages, can, reloadOn } from '../session.js';

/** The workflow's next steps from each status (each a `POST /orders/{id}/<step>`). */
const NEXT = { pending: ['confirm', 'cancel'], confirmed: ['ship', 'cancel'], shipped: ['deliver'] };

export async function shop() {
  const error = errorBox();
  const products = h('tbody', { id: 'products' });
  const orders = h('tbody', { id: 'orders' });
  const pick = h('select', { name: 'product_id', required: true });
  const act = (fn) => attempt(error, fn);
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
        .filter((step) => can('POST', `/orders/{id}/${step}`))
        .map((step) => h('button', { type: 'button', class: step === 'cancel' ? 'danger' : 'plain',
          'aria-label': `${step} the order of ${o.customer_email}`,
          onclick: () => act(() => api('POST', `/orders/${o.order_id}/${step}`)) }, step))))));
  };
  const name = h('input', { name: 'name', required: true });
  const sku = h('input', { name: 'sku', required: true });
  const price = h('input', { name: 'price', required: true, inputmode: 'decimal' });
  const category = h('input', { name: 'category', required: true });
  const stock = h('input', { name: 'inventory', type: 'number', min: 0, value: 0 });
  const newProduct = can('POST', '/products')
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
  show('Products and orders', error,
    h('h2', {}, 'Catalogue'), newProduct,
    table('Products', ['Product', 'SKU', 'Price', 'Stock'], products),
    h('h2', {}, 'Orders'), place,
    table('Orders', ['Customer', 'Items', 'Total', 'Status', 'Actions'], orders));
  await load();
  reloadOn(['product-', 'order-'], load);
}
