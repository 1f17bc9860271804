'use strict';
// The collection: pages of the list (the API's keyset cursor) and search as you type
// (the API's fuzzy search; the newest keystroke wins, older searches are aborted).
(function (app) {
  const { el, byId, clear, debounce } = app.dom;
  const PAGE_SIZE = 20;
  const SEARCH_LIMIT = 50;
  const SEARCH_DELAY_MS = 200;

  // cursors[i]: the cursor that fetches page i (page 0 has none).
  const state = { cursors: [null], page: 0, next: null, search: null, loads: 0 };

  function grades(record) {
    if (!record.recordGrade && !record.sleeveGrade) return '–';
    return (record.recordGrade || '–') + ' / ' + (record.sleeveGrade || '–');
  }

  function row(record) {
    const href = '/records/' + encodeURIComponent(record.id);
    const tr = el(
      'tr',
      { dataset: { id: record.id } },
      el('td', {}, el('a', { href, dataset: { route: '' } }, record.artist)),
      el('td', {}, record.name),
      el('td', {}, record.format),
      el('td', {}, grades(record)),
      el('td', { className: 'num' }, record.pricePaid ?? '–'),
      el('td', {}, record.purchasedAt ?? '–'),
    );
    tr.addEventListener('click', (event) => {
      if (!event.target.closest('a')) app.navigate(href);
    });
    return tr;
  }

  function render(records, summary, emptyText) {
    const body = byId('records-body');
    clear(body);
    body.append(...records.map(row));
    byId('records-table').hidden = records.length === 0;
    const empty = byId('records-empty');
    empty.hidden = records.length !== 0;
    if (emptyText) {
      empty.replaceChildren(emptyText);
    } else {
      empty.replaceChildren('No records yet. ', el('a', { href: '/records/new', dataset: { route: '' } }, 'Add your first one'), '.');
    }
    byId('records-summary').textContent = summary;
  }

  function renderPager(visible) {
    byId('pager').hidden = !visible;
    byId('page-prev').disabled = state.page === 0;
    byId('page-next').disabled = !state.next;
    byId('page-number').textContent = 'Page ' + (state.page + 1);
  }

  async function loadPage() {
    const load = ++state.loads;
    try {
      const page = await app.api.listRecords(state.cursors[state.page], PAGE_SIZE);
      if (load !== state.loads) return;
      state.next = page.nextCursor || null;
      const first = state.page * PAGE_SIZE + 1;
      const summary = page.records.length
        ? 'Records ' + first + '–' + (first + page.records.length - 1)
        : '';
      render(page.records, summary, state.page > 0 ? 'No more records.' : null);
      renderPager(state.page > 0 || state.next !== null);
    } catch (err) {
      if (load === state.loads) app.showError(err);
    }
  }

  async function runSearch(q) {
    if (state.search) state.search.abort();
    const controller = new AbortController();
    state.search = controller;
    const load = ++state.loads;
    try {
      const answer = await app.api.searchRecords(q, SEARCH_LIMIT, controller.signal);
      if (load !== state.loads) return;
      const hits = answer.hits.map((hit) => hit.record);
      const noun = hits.length === 1 ? ' match' : ' matches';
      render(hits, hits.length + noun + ' for “' + q + '”', 'No records match “' + q + '”.');
      renderPager(false);
    } catch (err) {
      if (err.name !== 'AbortError' && load === state.loads) app.showError(err);
    }
  }

  function refresh() {
    const q = byId('search').value.trim();
    if (q) {
      runSearch(q);
    } else {
      if (state.search) state.search.abort();
      loadPage();
    }
  }

  byId('search').addEventListener('input', debounce(() => {
    app.clearMessages();
    state.cursors = [null];
    state.page = 0;
    refresh();
  }, SEARCH_DELAY_MS));

  byId('page-next').addEventListener('click', () => {
    if (!state.next) return;
    state.cursors[state.page + 1] = state.next;
    state.page += 1;
    loadPage();
  });

  byId('page-prev').addEventListener('click', () => {
    if (state.page === 0) return;
    state.page -= 1;
    loadPage();
  });

  app.records = {
    show() {
      state.cursors = [null];
      state.page = 0;
      state.next = null;
      refresh();
    },
    reset() {
      byId('search').value = '';
      render([], '', null);
    },
  };
})(window.RecordApp = window.RecordApp || {});
