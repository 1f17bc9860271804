'use strict';
// The public API, same origin, through the edge (`/api/...`).
//
// The bearer token lives only in this closure, never in a cookie or in storage: with no
// cookie the browser attaches nothing by itself, so no other site can make requests on the
// collector's behalf (no CSRF surface), and a script injected elsewhere cannot read it from
// storage. The price: a reload logs out.
(function (app) {
  let token = null;

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field || null;
    }
  }

  async function request(method, path, body, signal) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token !== null) headers.authorization = 'Bearer ' + token;
    let response;
    try {
      response = await fetch('/api' + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        // Answers are per user: never from or into the browser's HTTP cache.
        cache: 'no-store',
        credentials: 'omit',
        signal,
      });
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      throw new ApiError(0, 'network_error', 'The server could not be reached (' + err.message + ')');
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      if (response.status === 401 && token !== null) {
        token = null;
        app.onSessionLost && app.onSessionLost();
      }
      throw new ApiError(
        response.status,
        error.code || 'http_' + response.status,
        error.message || 'The server answered ' + response.status + ' ' + response.statusText,
        error.field,
      );
    }
    return data;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== '') search.set(key, value);
    }
    const text = search.toString();
    return text ? '?' + text : '';
  }

  const recordPath = (id) => '/records/' + encodeURIComponent(id);

  app.api = {
    ApiError,
    loggedIn: () => token !== null,
    register: (email, password) => request('POST', '/auth/register', { email, password }),
    async login(email, password) {
      const answer = await request('POST', '/auth/login', { email, password });
      token = answer.token;
      return answer;
    },
    me: () => request('GET', '/auth/me'),
    async logout() {
      try {
        await request('POST', '/auth/logout');
      } finally {
        token = null;
      }
    },
    listRecords: (cursor, limit) => request('GET', '/records' + query({ limit, cursor })),
    searchRecords: (q, limit, signal) =>
      request('GET', '/records/search' + query({ q, limit }), undefined, signal),
    getRecord: (id) => request('GET', recordPath(id)),
    createRecord: (fields) => request('POST', '/records', fields),
    replaceRecord: (id, fields) => request('PUT', recordPath(id), fields),
    deleteRecord: (id) => request('DELETE', recordPath(id)),
    stats: () => request('GET', '/records/stats'),
  };
})(window.RecordApp = window.RecordApp || {});
