// k6 load test for greeting-service: POST /greet at a constant and then a ramping
// arrival rate, with checks on status and body, and thresholds that fail the run.
//
//   k6 run loadtest/k6/greet.js                       # against http://127.0.0.1:8080
//   BASE_URL=http://127.0.0.1:9000 RATE=2000 DURATION=30s k6 run loadtest/k6/greet.js
import http from 'k6/http';
import { check } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const RATE = parseInt(__ENV.RATE || '1000', 10);
const DURATION = __ENV.DURATION || '20s';
const P99_MS = parseFloat(__ENV.P99_MS || '50');

export const options = {
  discardResponseBodies: false,
  scenarios: {
    constant: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 50,
      maxVUs: 200,
    },
    ramping: {
      executor: 'ramping-arrival-rate',
      startTime: DURATION,
      startRate: Math.max(1, Math.floor(RATE / 4)),
      timeUnit: '1s',
      preAllocatedVUs: 50,
      maxVUs: 200,
      stages: [
        { target: RATE, duration: DURATION },
        { target: Math.max(1, Math.floor(RATE / 4)), duration: DURATION },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: [`p(99)<${P99_MS}`],
    checks: ['rate>0.999'],
  },
};

const names = ['John', 'Zoë', '日本', '<b>x</b>', '  padded  '];

export default function () {
  const name = names[Math.floor(Math.random() * names.length)];
  const res = http.post(`${BASE_URL}/greet`, JSON.stringify({ name }), {
    headers: { 'Content-Type': 'application/json' },
  });
  check(res, {
    'status is 200': (r) => r.status === 200,
    'greets the trimmed name': (r) => r.json('message') === `Hello, ${name.trim()}!`,
    'has a request id': (r) => !!r.headers['X-Request-Id'],
  });
}
