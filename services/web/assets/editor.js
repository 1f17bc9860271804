'use strict';
// Create, edit (PUT: the form holds every field) and delete one record.
(function (app) {
  const { el, byId } = app.dom;
  const GRADES = [
    ['', '— not graded —'],
    ['M', 'M — Mint'],
    ['NM', 'NM — Near Mint'],
    ['VG+', 'VG+ — Very Good Plus'],
    ['VG', 'VG — Very Good'],
    ['G+', 'G+ — Good Plus'],
    ['G', 'G — Good'],
    ['F', 'F — Fair'],
    ['P', 'P — Poor'],
  ];
  // The record's fields as the API names them (camelCase); inputs are `f-<name>`.
  const TEXT_FIELDS = [
    'artist', 'name', 'format', 'label', 'catalogNumber', 'recordGrade', 'sleeveGrade',
    'purchasedAt', 'pricePaid', 'notes',
  ];
  const FLAGS = ['hasInsert', 'hasBooklet', 'hasObiStrip', 'hasFactorySleeve', 'isPromo'];

  const form = byId('record-form');
  const input = (name) => byId('f-' + name);
  // The id of the record in the form; null while creating one.
  let editing = null;
  let loads = 0;

  for (const name of ['recordGrade', 'sleeveGrade']) {
    input(name).append(...GRADES.map(([value, text]) => el('option', { value }, text)));
  }

  function fill(record) {
    for (const name of TEXT_FIELDS) input(name).value = (record && record[name]) ?? '';
    for (const name of FLAGS) input(name).checked = Boolean(record && record[name]);
    const meta = record
      ? 'Added ' + new Date(record.createdAt).toLocaleString() +
        ' · changed ' + new Date(record.updatedAt).toLocaleString()
      : '';
    byId('record-meta').textContent = meta;
  }

  // Every field, empty ones as null (the API clears them).
  function read() {
    const body = {};
    for (const name of TEXT_FIELDS) {
      const value = input(name).value.trim();
      body[name] = value === '' ? null : value;
    }
    for (const name of FLAGS) body[name] = input(name).checked;
    return body;
  }

  function setMode(id) {
    editing = id;
    byId('editor-title').textContent = id ? 'Edit record' : 'New record';
    byId('record-delete').hidden = !id;
    byId('record-delete-confirm').hidden = true;
    app.clearMessages(form);
  }

  const title = (record) => '“' + record.artist + ' – ' + record.name + '”';

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    app.clearMessages(form);
    await app.busy(form, async () => {
      try {
        const body = read();
        const saved = editing
          ? await app.api.replaceRecord(editing, body)
          : await app.api.createRecord(body);
        app.navigate('/');
        app.notify('Saved ' + title(saved) + '.');
      } catch (err) {
        app.showError(err, form);
      }
    });
  });

  byId('record-delete').addEventListener('click', () => {
    byId('record-delete').hidden = true;
    byId('record-delete-confirm').hidden = false;
    byId('record-delete-confirm').focus();
  });

  byId('record-delete-confirm').addEventListener('click', async () => {
    const id = editing;
    const name = byId('f-artist').value + ' – ' + byId('f-name').value;
    await app.busy(form, async () => {
      try {
        await app.api.deleteRecord(id);
        app.navigate('/');
        app.notify('Deleted “' + name + '”.');
      } catch (err) {
        app.showError(err, form);
      }
    });
  });

  app.editor = {
    showNew() {
      loads++;
      setMode(null);
      fill(null);
      input('artist').focus();
    },
    async showExisting(id) {
      const load = ++loads;
      setMode(id);
      fill(null);
      await app.busy(form, async () => {
        try {
          const record = await app.api.getRecord(id);
          if (load !== loads) return;
          fill(record);
          input('artist').focus();
        } catch (err) {
          if (load === loads) app.showError(err);
        }
      });
    },
  };
})(window.RecordApp = window.RecordApp || {});
