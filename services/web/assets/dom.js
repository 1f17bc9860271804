'use strict';
// DOM helpers. Everything the page shows is built with createElement/textContent, never
// innerHTML: no markup from the API is ever parsed, which is what lets the CSP forbid
// inline script and require Trusted Types.
(function (app) {
  // el('td', {className: 'num'}, 'text', childNode, ...)
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === 'dataset') {
        Object.assign(node.dataset, value);
      } else if (key in node) {
        node[key] = value;
      } else {
        node.setAttribute(key, value);
      }
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const byId = (id) => document.getElementById(id);

  function clear(node) {
    node.replaceChildren();
  }

  // Debounce: `fn` runs `ms` after the last call.
  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  app.dom = { el, byId, clear, debounce };
})(window.RecordApp = window.RecordApp || {});
