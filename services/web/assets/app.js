'use strict';
// The shell: messages, client-side routes (history API; the web service answers every
// navigation with this page, so a path survives a reload), the signed-in state.
(function (app) {
  const { byId } = app.dom;
  const VIEWS = ['login', 'register', 'records', 'editor', 'stats'];
  const ROUTES = [
    { pattern: /^\/login$/, view: 'login', title: 'Log in', open: true, show: () => app.auth.showLogin() },
    { pattern: /^\/register$/, view: 'register', title: 'Register', open: true, show: () => app.auth.showRegister() },
    { pattern: /^\/$/, view: 'records', title: 'Records', nav: 'nav-records', show: () => app.records.show() },
    { pattern: /^\/records\/new$/, view: 'editor', title: 'New record', nav: 'nav-new', show: () => app.editor.showNew() },
    { pattern: /^\/records\/([^/]+)$/, view: 'editor', title: 'Edit record', show: (m) => app.editor.showExisting(decodeURIComponent(m[1])) },
    { pattern: /^\/stats$/, view: 'stats', title: 'Stats', nav: 'nav-stats', show: () => app.stats.show() },
  ];
  const HOME = ROUTES[2];
  // Where to go once logged in: the path asked for before the login page.
  let afterLogin = '/';

  // --- messages ---

  app.clearMessages = (form) => {
    byId('error').hidden = true;
    byId('notice').hidden = true;
    if (form) {
      for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
    }
  };

  // An API error ({error: {code, message, field}}) or any other failure, in the page.
  app.showError = (err, form) => {
    if (!(err instanceof app.api.ApiError)) console.error(err);
    byId('error-message').textContent = err.message || String(err);
    byId('error-code').textContent = err.code ? '(' + err.code + ')' : '';
    byId('notice').hidden = true;
    byId('error').hidden = false;
    const input = form && err.field && form.querySelector('[data-field="' + CSS.escape(err.field) + '"]');
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  };

  app.notify = (text) => {
    byId('notice').textContent = text;
    byId('error').hidden = true;
    byId('notice').hidden = false;
  };

  // Runs `work` with the form's buttons disabled (no double submits).
  app.busy = async (form, work) => {
    const buttons = form.querySelectorAll('button');
    form.setAttribute('aria-busy', 'true');
    for (const button of buttons) button.disabled = true;
    try {
      await work();
    } finally {
      for (const button of buttons) button.disabled = false;
      form.removeAttribute('aria-busy');
    }
  };

  // --- routes ---

  function render() {
    let path = location.pathname;
    let match = null;
    let route = ROUTES.find((r) => (match = path.match(r.pattern)));
    if (!route) {
      route = HOME;
      path = '/';
      history.replaceState(null, '', path);
    }
    if (!route.open && !app.api.loggedIn()) {
      afterLogin = path;
      route = ROUTES[0];
      history.replaceState(null, '', '/login');
    } else if (route.open && app.api.loggedIn()) {
      route = HOME;
      history.replaceState(null, '', '/');
      match = null;
    }
    for (const view of VIEWS) byId('view-' + view).hidden = view !== route.view;
    for (const link of byId('nav').querySelectorAll('a')) {
      if (link.id === route.nav) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    document.title = route.title + ' · Record Platform';
    route.show(match);
  }

  app.navigate = (path) => {
    app.clearMessages();
    if (path !== location.pathname) history.pushState(null, '', path);
    render();
  };

  document.addEventListener('click', (event) => {
    const link = event.target.closest('a[data-route]');
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    app.navigate(new URL(link.href).pathname);
  });
  window.addEventListener('popstate', () => {
    app.clearMessages();
    render();
  });

  // --- session ---

  function showSignedIn(email) {
    byId('account-email').textContent = email || '';
    byId('account').hidden = !email;
    byId('nav').hidden = !email;
  }

  app.signedIn = (email) => {
    showSignedIn(email);
    const target = afterLogin;
    afterLogin = '/';
    app.navigate(target);
  };

  function signedOut() {
    showSignedIn(null);
    app.records.reset();
    app.navigate('/login');
  }

  // The API answered 401 to a signed-in request (token expired or revoked).
  app.onSessionLost = signedOut;

  byId('logout').addEventListener('click', async () => {
    try {
      await app.api.logout();
      signedOut();
      app.notify('Logged out.');
    } catch (err) {
      // The token is forgotten either way; the server may not have revoked it.
      signedOut();
      app.showError(err);
    }
  });

  render();
})(window.RecordApp = window.RecordApp || {});
