// The AI assistant (seed 000): ask, and watch each query go QUEUED → PROCESSING →
// COMPLETED live; the month's usage against the tier's quota.

import { h, field, show, errorBox, attempt } from '../lib.js';
import { api, session, reloadOn } from '../session.js';

export async function ai() {
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
    if (await attempt(error, () => api('POST', '/ai/query', { prompt: prompt.value }))) {
      form.reset();
      await load();
    }
  } }, field('Ask the assistant', prompt), h('button', { type: 'submit' }, 'Ask'), error);
  show('AI assistant', form, usage, list);
  await load();
  reloadOn(['aiquery-'], load);
}
