'use strict';
// The dashboard: counts by format and grade, money spent (GET /api/records/stats).
(function (app) {
  const { el, byId, clear } = app.dom;
  let loads = 0;

  function counts(tableId, entries, total) {
    const body = byId(tableId).tBodies[0];
    clear(body);
    if (entries.length === 0) {
      body.append(el('tr', {}, el('td', { className: 'empty' }, 'Nothing yet')));
      return;
    }
    for (const entry of entries) {
      body.append(
        el(
          'tr',
          { dataset: { key: entry.key } },
          el('td', {}, entry.key),
          el('td', {}, el('meter', { min: 0, max: Math.max(total, 1), value: entry.count })),
          el('td', { className: 'num' }, entry.count),
        ),
      );
    }
  }

  app.stats = {
    async show() {
      const load = ++loads;
      try {
        const stats = await app.api.stats();
        if (load !== loads) return;
        byId('stat-total').textContent = stats.totalRecords;
        byId('stat-spent').textContent = stats.totalSpent;
        byId('stat-average').textContent = stats.averageSpent;
        counts('stat-formats', stats.byFormat, stats.totalRecords);
        counts('stat-record-grades', stats.byRecordGrade, stats.totalRecords);
        counts('stat-sleeve-grades', stats.bySleeveGrade, stats.totalRecords);
      } catch (err) {
        if (load === loads) app.showError(err);
      }
    },
  };
})(window.RecordApp = window.RecordApp || {});
