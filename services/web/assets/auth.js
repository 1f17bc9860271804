'use strict';
// Register, log in (the token stays in api.js's memory), and the session's end.
(function (app) {
  const { byId } = app.dom;

  async function submitLogin(event) {
    event.preventDefault();
    const form = event.currentTarget;
    app.clearMessages(form);
    const email = byId('login-email').value.trim();
    const password = byId('login-password').value;
    await app.busy(form, async () => {
      try {
        await app.api.login(email, password);
        const me = await app.api.me();
        byId('login-password').value = '';
        app.signedIn(me.email);
      } catch (err) {
        app.showError(err, form);
      }
    });
  }

  async function submitRegister(event) {
    event.preventDefault();
    const form = event.currentTarget;
    app.clearMessages(form);
    const email = byId('register-email').value.trim();
    const password = byId('register-password').value;
    await app.busy(form, async () => {
      try {
        const user = await app.api.register(email, password);
        byId('register-password').value = '';
        byId('login-email').value = user.email;
        app.navigate('/login');
        app.notify('Account created for ' + user.email + '. Log in to continue.');
        byId('login-password').focus();
      } catch (err) {
        app.showError(err, form);
      }
    });
  }

  byId('login-form').addEventListener('submit', submitLogin);
  byId('register-form').addEventListener('submit', submitRegister);

  app.auth = {
    showLogin() {
      const email = byId('login-email');
      (email.value ? byId('login-password') : email).focus();
    },
    showRegister() {
      byId('register-email').focus();
    },
  };
})(window.RecordApp = window.RecordApp || {});
