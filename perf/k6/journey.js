// A user journey against any deployment of the Record Platform: log in, then create, read,
// list, search, update and delete records, with thresholds that fail the run when the
// platform is slow or erroring.
//
//   k6 run -e BASE_URL=https://localhost:8443 -e EMAIL=perf@example.com -e PASSWORD=... \
//          perf/k6/journey.js
//
// Env: BASE_URL (default https://localhost:8443), EMAIL / PASSWORD (an existing account; with
// REGISTER=1 the script registers it first), TOKEN (skip the login and use this bearer token),
// VUS (default 10), DURATION (default 30s), INSECURE=1 to skip certificate verification (dev CA).
import http from 'k6/http';
import { check, group, sleep, fail } from 'k6';

const BASE = (__ENV.BASE_URL || 'https://localhost:8443').replace(/\/$/, '');

export const options = {
  insecureSkipTLSVerify: __ENV.INSECURE === '1',
  scenarios: {
    journey: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '10', 10),
      duration: __ENV.DURATION || '30s',
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{step:login}': ['p(95)<500'],
    'http_req_duration{step:create}': ['p(95)<200', 'p(99)<400'],
    'http_req_duration{step:read}': ['p(95)<100', 'p(99)<200'],
    'http_req_duration{step:list}': ['p(95)<150', 'p(99)<300'],
    'http_req_duration{step:search}': ['p(95)<200', 'p(99)<400'],
    'http_req_duration{step:update}': ['p(95)<200', 'p(99)<400'],
    'http_req_duration{step:delete}': ['p(95)<200', 'p(99)<400'],
  },
};

const JSON_HEADERS = { 'content-type': 'application/json' };

export function setup() {
  if (__ENV.TOKEN) {
    return { token: __ENV.TOKEN };
  }
  const email = __ENV.EMAIL;
  const password = __ENV.PASSWORD;
  if (!email || !password) {
    fail('set TOKEN, or EMAIL and PASSWORD (REGISTER=1 to create the account)');
  }
  const body = JSON.stringify({ email, password });
  if (__ENV.REGISTER === '1') {
    const r = http.post(`${BASE}/api/auth/register`, body, { headers: JSON_HEADERS });
    check(r, { 'register 201 or 409': (x) => x.status === 201 || x.status === 409 });
  }
  const res = http.post(`${BASE}/api/auth/login`, body, {
    headers: JSON_HEADERS,
    tags: { step: 'login' },
  });
  if (!check(res, { 'login 200': (r) => r.status === 200 })) {
    fail(`login failed: ${res.status} ${res.body}`);
  }
  return { token: res.json('token') };
}

const WORDS = ['Velvet', 'Comets', 'Night', 'Summer', 'Electric', 'Ocean', 'Golden', 'Ravens'];

export default function (data) {
  const auth = { authorization: `Bearer ${data.token}` };
  const headers = Object.assign({}, auth, JSON_HEADERS);
  const word = WORDS[Math.floor(Math.random() * WORDS.length)];
  let id;
  group('create', () => {
    const res = http.post(
      `${BASE}/api/records`,
      JSON.stringify({
        artist: `${word} k6`,
        name: `Journey ${__VU}-${__ITER}`,
        format: 'LP',
        recordGrade: 'VG+',
        sleeveGrade: 'VG',
        pricePaid: '12.50',
      }),
      { headers, tags: { step: 'create' } },
    );
    check(res, { 'create 201': (r) => r.status === 201 });
    id = res.status === 201 ? res.json('id') : undefined;
  });
  if (!id) {
    sleep(1);
    return;
  }
  group('read', () => {
    const res = http.get(`${BASE}/api/records/${id}`, { headers: auth, tags: { step: 'read' } });
    check(res, { 'read 200': (r) => r.status === 200 });
  });
  group('list', () => {
    const res = http.get(`${BASE}/api/records?limit=20`, { headers: auth, tags: { step: 'list' } });
    check(res, { 'list 200': (r) => r.status === 200 });
  });
  group('search', () => {
    const res = http.get(`${BASE}/api/records/search?q=${encodeURIComponent(word)}`, {
      headers: auth,
      tags: { step: 'search' },
    });
    check(res, { 'search 200': (r) => r.status === 200 });
  });
  group('update', () => {
    const res = http.patch(`${BASE}/api/records/${id}`, JSON.stringify({ notes: 'k6 journey' }), {
      headers,
      tags: { step: 'update' },
    });
    check(res, { 'update 200': (r) => r.status === 200 });
  });
  group('delete', () => {
    const res = http.del(`${BASE}/api/records/${id}`, null, { headers: auth, tags: { step: 'delete' } });
    check(res, { 'delete 204': (r) => r.status === 204 });
  });
  sleep(Number(__ENV.THINK || '0.2'));
}
