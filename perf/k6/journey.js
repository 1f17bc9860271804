// A user journey against any deployment of the Record Platform: every virtual user logs in with
// an account of its own, then creates, reads, lists, searches, updates and deletes records, with
// thresholds that fail the run when the platform is slow or erroring.
//
//   k6 run -e BASE_URL=https://localhost:8443 -e INSECURE=1 perf/k6/journey.js
//
// Accounts: setup() registers one account per VU (k6-<run>-vu<N>@example.com; <run> is new on
// every run, so runs never collide) and logs each in; VU N uses token N. The per-user rate limit
// of /api/records (dev: 100/s, burst 200) then sees one VU's traffic (~25 req/s), so the run
// measures the platform, not the limiter. spike.js is the script that expects 429s.
// Register and login are limited per client address (dev: 10/min, burst 10, each): 10 VUs fit
// the burst; more VUs, or a second run within a minute, make setup wait for each 429's
// Retry-After before it goes on (bounded by SETUP_TIMEOUT). Those waits are not measured.
//
// Env: BASE_URL (default https://localhost:8443), VUS (default 10), DURATION (default 30s; keep
// it within the tokens' lifetime, auth's --token-ttl, 15m by default), THINK (seconds between
// iterations, default 0.2), INSECURE=1 to skip certificate verification (dev CA),
// SETUP_TIMEOUT (default 5m), EMAIL (a template: me@example.com makes me+<run>-vu<N>@example.com),
// PASSWORD (default: one generated per run), TOKEN (use this bearer token for every VU
// instead: they then share one user's quota, which is what the limiter is for).
import http from 'k6/http';
import { check, group, sleep, fail } from 'k6';

const BASE = (__ENV.BASE_URL || 'https://localhost:8443').replace(/\/$/, '');
const VUS = parseInt(__ENV.VUS || '10', 10);

export const options = {
  insecureSkipTLSVerify: __ENV.INSECURE === '1',
  setupTimeout: __ENV.SETUP_TIMEOUT || '5m',
  scenarios: {
    journey: {
      executor: 'constant-vus',
      vus: VUS,
      duration: __ENV.DURATION || '30s',
    },
  },
  thresholds: {
    // The journey's own requests only: setup's register/login (and their paced 429s) are
    // tagged step:account and left out.
    'http_req_failed{scenario:journey}': ['rate<0.01'],
    'checks{scenario:journey}': ['rate>0.99'],
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
// A 429 from register/login is paced, not failed: setup waits and asks again.
const ACCOUNT_STATUSES = http.expectedStatuses(200, 201, 409, 429);
const MAX_ACCOUNT_TRIES = 20;

function accountEmail(run, vu) {
  const template = __ENV.EMAIL || 'k6@example.com';
  const at = template.lastIndexOf('@');
  if (at < 1) {
    fail(`EMAIL must look like name@domain, not ${template}`);
  }
  const local = __ENV.EMAIL ? `${template.slice(0, at)}+${run}-vu${vu}` : `k6-${run}-vu${vu}`;
  return `${local}${template.slice(at)}`;
}

/** POSTs `body` to `path`, waiting out 429s (Retry-After, default 6 s); the last answer. */
function postPaced(path, body, tags) {
  for (let attempt = 1; ; attempt++) {
    const res = http.post(`${BASE}${path}`, body, {
      headers: JSON_HEADERS,
      tags,
      responseCallback: ACCOUNT_STATUSES,
    });
    if (res.status !== 429 || attempt >= MAX_ACCOUNT_TRIES) {
      return res;
    }
    sleep(Math.max(1, parseInt(res.headers['Retry-After'] || '6', 10)));
  }
}

export function setup() {
  if (__ENV.TOKEN) {
    return { tokens: [__ENV.TOKEN] };
  }
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const password = __ENV.PASSWORD || `k6-journey-${run}-correct-horse`;
  const tokens = [];
  for (let vu = 1; vu <= VUS; vu++) {
    const body = JSON.stringify({ email: accountEmail(run, vu), password });
    const reg = postPaced('/api/auth/register', body, { step: 'account' });
    if (reg.status !== 201 && reg.status !== 409) {
      fail(`registering VU ${vu}'s account failed: ${reg.status} ${reg.body}`);
    }
    const res = postPaced('/api/auth/login', body, { step: 'login' });
    if (res.status !== 200) {
      fail(`login of VU ${vu}'s account failed: ${res.status} ${res.body}`);
    }
    tokens.push(res.json('token'));
  }
  return { tokens };
}

const WORDS = ['Velvet', 'Comets', 'Night', 'Summer', 'Electric', 'Ocean', 'Golden', 'Ravens'];

export default function (data) {
  // __VU counts from 1; with TOKEN there is one token for all.
  const token = data.tokens[(__VU - 1) % data.tokens.length];
  const auth = { authorization: `Bearer ${token}` };
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
