// A spike past the per-user rate limit of /api/records: the platform must shed the excess with
// 429 (never 5xx) and keep serving the allowed share.
//
//   k6 run -e BASE_URL=https://localhost:8443 -e TOKEN=... perf/k6/spike.js
//
// Env: BASE_URL, TOKEN (a valid bearer token; all VUs share it, so they share one user's quota),
// PATH_UNDER_TEST (default /api/records?limit=1), RATE (peak requests/s, default 1000, well above
// the dev limit of 100/s + 200 burst), INSECURE=1 for the dev CA.
import http from 'k6/http';
import { check, fail } from 'k6';
import { Counter } from 'k6/metrics';

const BASE = (__ENV.BASE_URL || 'https://localhost:8443').replace(/\/$/, '');
const PATH = __ENV.PATH_UNDER_TEST || '/api/records?limit=1';
const RATE = parseInt(__ENV.RATE || '1000', 10);

const limited = new Counter('rate_limited_429');
const allowed = new Counter('allowed_2xx');
const server_errors = new Counter('server_errors_5xx');

// 429 is the expected answer here, not a failure.
http.setResponseCallback(http.expectedStatuses({ min: 200, max: 299 }, 429));

export const options = {
  insecureSkipTLSVerify: __ENV.INSECURE === '1',
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: 10,
      timeUnit: '1s',
      preAllocatedVUs: 50,
      maxVUs: 400,
      stages: [
        { target: 10, duration: '5s' },
        { target: RATE, duration: '5s' },
        { target: RATE, duration: '10s' },
        { target: 10, duration: '5s' },
      ],
    },
  },
  thresholds: {
    rate_limited_429: ['count>0'], // the limit must engage
    allowed_2xx: ['count>0'], // and still let the allowed share through
    server_errors_5xx: ['count==0'],
    http_req_failed: ['rate<0.01'], // anything but 2xx/429
  },
};

export function setup() {
  if (!__ENV.TOKEN) {
    fail('set TOKEN to a valid bearer token');
  }
}

export default function () {
  const res = http.get(`${BASE}${PATH}`, { headers: { authorization: `Bearer ${__ENV.TOKEN}` } });
  if (res.status === 429) {
    limited.add(1);
  } else if (res.status >= 200 && res.status < 300) {
    allowed.add(1);
  } else if (res.status >= 500) {
    server_errors.add(1);
  }
  check(res, {
    '2xx or 429': (r) => (r.status >= 200 && r.status < 300) || r.status === 429,
    '429 says retry-after': (r) => r.status !== 429 || r.headers['Retry-After'] !== undefined,
  });
}
