// Verifies the signatures of a MailLaser webhook request, both schemes,
// with Node.js's standard library only (docs/webhook.md).
//
//   WEBHOOK_SECRET=... node verify.js maillaser HEADERS BODY
//   WEBHOOK_SECRET=whsec_... node verify.js standard HEADERS BODY
//
// HEADERS is a file of `Name: value` lines as in HTTP, BODY the raw request
// body. Prints `valid` and exits 0, or prints `invalid` and exits 1.
'use strict';

const crypto = require('node:crypto');

const TOLERANCE = 300; // seconds a timestamp may be away from our clock (replays)

// The value of header `name` (lower case), whatever case `headers` uses
// (Node's `request.headers` is already lower case).
function header(headers, name) {
  const key = Object.keys(headers).find((key) => key.toLowerCase() === name);
  return key === undefined ? '' : String(headers[key]);
}

function fresh(timestamp, tolerance) {
  return /^[0-9]+$/.test(timestamp) && Math.abs(Date.now() / 1000 - Number(timestamp)) <= tolerance;
}

// Constant-time comparison of two Buffers (timingSafeEqual needs equal lengths).
function equal(a, b) {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

// X-MailLaser-Signature-256: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>.
// `body` is the raw request body as a Buffer, before any JSON parsing.
function verifyMailLaserSignature(secret, headers, body, tolerance = TOLERANCE) {
  const timestamp = header(headers, 'x-maillaser-timestamp');
  const signature = header(headers, 'x-maillaser-signature-256');
  if (!fresh(timestamp, tolerance)) return false;
  const mac = crypto.createHmac('sha256', secret).update(`${timestamp}.`).update(body);
  return equal(Buffer.from(`sha256=${mac.digest('hex')}`), Buffer.from(signature));
}

// Standard Webhooks: `webhook-signature` holds space-separated
// `v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`
// entries (several during a key rotation); any one matching is enough.
// `secret` is `whsec_` followed by the base64 key.
function verifyStandardWebhook(secret, headers, body, tolerance = TOLERANCE) {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  if (!id || !fresh(timestamp, tolerance)) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = crypto.createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest();
  return header(headers, 'webhook-signature').split(' ').some((entry) => {
    const comma = entry.indexOf(',');
    return entry.slice(0, comma) === 'v1' && equal(expected, Buffer.from(entry.slice(comma + 1), 'base64'));
  });
}

module.exports = { verifyMailLaserSignature, verifyStandardWebhook };

if (require.main === module) {
  const fs = require('node:fs');
  const [scheme, headersPath, bodyPath] = process.argv.slice(2);
  const secret = process.env.WEBHOOK_SECRET;
  if (!['maillaser', 'standard'].includes(scheme) || !bodyPath || !secret) {
    console.error('usage: WEBHOOK_SECRET=... node verify.js maillaser|standard HEADERS BODY');
    process.exit(2);
  }
  const headers = {};
  for (const line of fs.readFileSync(headersPath, 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  const body = fs.readFileSync(bodyPath);
  const verify = scheme === 'maillaser' ? verifyMailLaserSignature : verifyStandardWebhook;
  const valid = verify(secret, headers, body);
  console.log(valid ? 'valid' : 'invalid');
  process.exit(valid ? 0 : 1);
}
