// Pagination for the API's paginated lists (limit/offset, X-Total-Count).
import { h, setText } from '../dom';

export interface Pager {
  el: HTMLElement;
  limit: number;
  offset: number;
  update: (total: number, shown: number) => void;
}

export function pager(limit: number, onChange: () => void): Pager {
  const info = h('span', { class: 'pager-info' });
  const prev = h('button', { type: 'button', class: 'pager-prev', t: 'pager.prev' });
  const next = h('button', { type: 'button', class: 'pager-next', t: 'pager.next' });
  const p: Pager = {
    el: h('div', { class: 'pager' }, prev, info, next),
    limit,
    offset: 0,
    update(total, shown) {
      setText(info, 'pager.info', { from: total === 0 ? 0 : p.offset + 1, to: p.offset + shown, total });
      prev.disabled = p.offset === 0;
      next.disabled = p.offset + shown >= total;
    },
  };
  prev.addEventListener('click', () => {
    p.offset = Math.max(0, p.offset - p.limit);
    onChange();
  });
  next.addEventListener('click', () => {
    p.offset += p.limit;
    onChange();
  });
  return p;
}
