// Open-loop fixed-rate load (constant-arrival-rate): requests start on schedule whether or not
// earlier ones finished, so queueing shows up in the latency instead of lowering the rate
// (no coordinated omission). perf/run.sh runs it against "direct" and each proxy and reports
// the p50/p99/p99.9 added over direct.
//
//   k6 run -e URL=https://localhost:19443/bench -e RATE=2000 -e DURATION=10s \
//          -e SUMMARY=/tmp/summary.json perf/k6/open-loop.js
import http from 'k6/http';
import { check } from 'k6';

const RATE = parseInt(__ENV.RATE || '2000', 10);

export const options = {
  insecureSkipTLSVerify: true, // loopback benchmark against a private CA
  discardResponseBodies: true,
  summaryTrendStats: ['min', 'med', 'p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max', 'count'],
  scenarios: {
    open: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '10s',
      preAllocatedVUs: parseInt(__ENV.VUS || '300', 10),
      maxVUs: parseInt(__ENV.MAX_VUS || '1000', 10),
    },
  },
};

const URL = __ENV.URL || 'https://localhost:19443/bench';

export default function () {
  const res = http.get(URL);
  check(res, { 'status 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const out = {};
  if (__ENV.SUMMARY) {
    out[__ENV.SUMMARY] = JSON.stringify(data);
  }
  out.stdout = `open-loop ${URL} at ${RATE}/s: ` +
    `p50 ${(data.metrics.http_req_duration.values['p(50)'] * 1000).toFixed(0)} µs, ` +
    `p99 ${(data.metrics.http_req_duration.values['p(99)'] * 1000).toFixed(0)} µs, ` +
    `p99.9 ${(data.metrics.http_req_duration.values['p(99.9)'] * 1000).toFixed(0)} µs, ` +
    `failed ${(data.metrics.http_req_failed.values.rate * 100).toFixed(3)} %, ` +
    `dropped ${data.metrics.dropped_iterations ? data.metrics.dropped_iterations.values.count : 0}\n`;
  return out;
}
