// Open-loop fixed-rate load (constant-arrival-rate): requests start on schedule whether or not
// earlier ones finished, so queueing shows up in the latency instead of lowering the rate
// (no coordinated omission). perf/run.sh runs it against "direct" and each proxy and reports
// the p50/p99/p99.9 added over direct.
//
// One scenario of WARMUP + DURATION seconds: requests of the first WARMUP seconds are tagged
// phase=warmup (every VU opens its keep-alive connection then), the rest phase=measure, and
// only those make the reported latency.
//
//   k6 run -e URL=https://localhost:19443/bench -e RATE=2000 -e WARMUP=2 -e DURATION=10 \
//          -e SUMMARY=/tmp/summary.json perf/k6/open-loop.js
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';

const RATE = parseInt(__ENV.RATE || '2000', 10);
const WARMUP = parseFloat(__ENV.WARMUP || '2');
const DURATION = parseFloat(__ENV.DURATION || '10');
const URL = __ENV.URL || 'https://localhost:19443/bench';

export const options = {
  insecureSkipTLSVerify: true, // loopback benchmark against a private CA
  discardResponseBodies: true,
  summaryTrendStats: ['min', 'med', 'p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max', 'count'],
  scenarios: {
    open: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: `${WARMUP + DURATION}s`,
      preAllocatedVUs: parseInt(__ENV.VUS || '100', 10),
      maxVUs: parseInt(__ENV.MAX_VUS || '400', 10),
    },
  },
  // Referenced here so that the summary carries the measured phase on its own.
  thresholds: {
    'http_req_duration{phase:measure}': ['max>=0'],
    'http_reqs{phase:measure}': ['count>=0'],
    'http_req_failed{phase:measure}': ['rate>=0'],
  },
};

export default function () {
  const elapsed = (Date.now() - exec.scenario.startTime) / 1000;
  const phase = elapsed < WARMUP ? 'warmup' : 'measure';
  const res = http.get(URL, { tags: { phase } });
  check(res, { 'status 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const out = {};
  if (__ENV.SUMMARY) {
    out[__ENV.SUMMARY] = JSON.stringify(data);
  }
  const m = data.metrics['http_req_duration{phase:measure}'];
  const us = (k) => (m ? (m.values[k] * 1000).toFixed(0) : '?');
  const dropped = data.metrics.dropped_iterations ? data.metrics.dropped_iterations.values.count : 0;
  out.stdout = `open-loop ${URL} at ${RATE}/s (measured ${DURATION}s after ${WARMUP}s): ` +
    `p50 ${us('p(50)')} µs, p99 ${us('p(99)')} µs, p99.9 ${us('p(99.9)')} µs, dropped ${dropped}\n`;
  return out;
}
