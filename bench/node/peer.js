'use strict';
// Node.js peer for bench/run: Microsoft's provisioning client
// (azure-iot-provisioning-device-http, pinned by emulator/node-conformance/package-lock.json,
// whose node_modules this script reuses) registering against dps-emulator.
//
// Usage: node peer.js <spec.json>
// spec: { port, caFile, idScope, mode: "seq" | "conc",
//         seq:  n, kind: "symmetric"|"x509", registrationId, key? | certFile?, keyFile?
//         conc: concurrency, secs, groupKey, prefix }
// Every registration uses its own https.Agent (keep-alive inside the registration, as
// a device would), so each costs its own TCP connection and TLS handshake.
// Prints one JSON object on stdout.

const fs = require('fs');
const path = require('path');
const https = require('https');
const crypto = require('crypto');
const { createRequire } = require('module');

const nm = createRequire(path.join(__dirname, '..', '..', 'emulator', 'node-conformance', 'package.json'));
const { ProvisioningDeviceClient } = nm('azure-iot-provisioning-device');
const { Http } = nm('azure-iot-provisioning-device-http');
const HttpBase = nm('azure-iot-http-base').Http;
const { SymmetricKeySecurityClient } = nm('azure-iot-security-symmetric-key');
const { X509Security } = nm('azure-iot-security-x509');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
spec.ca = fs.readFileSync(spec.caFile, 'utf8');
if (spec.certFile) spec.cert = fs.readFileSync(spec.certFile, 'utf8');
if (spec.keyFile) spec.keyPem = fs.readFileSync(spec.keyFile, 'utf8');

function registerOnce(c) {
  return new Promise((resolve) => {
    // The client calls https.request with host only (port 443): the agent rewrites the port.
    const agent = new https.Agent({ keepAlive: true });
    const createConnection = agent.createConnection.bind(agent);
    agent.createConnection = (options, cb) => createConnection(Object.assign({}, options, { port: spec.port }), cb);
    const base = new HttpBase();
    base.setOptions({ ca: spec.ca, http: { agent } });
    const security = c.kind === 'x509'
      ? new X509Security(c.registrationId, { cert: c.cert, key: c.keyPem })
      : new SymmetricKeySecurityClient(c.registrationId, c.key);
    const client = ProvisioningDeviceClient.create('localhost', spec.idScope, new Http(base), security);
    client.register((err, result) => {
      agent.destroy();
      resolve(!err && result && result.status === 'assigned' ? null : (err ? (err.message || String(err)) : 'not assigned'));
    });
  });
}

function cpuUs() {
  const u = process.cpuUsage();
  return u.user + u.system;
}

async function seq() {
  const samples = [];
  let failures = 0;
  for (let i = 0; i < spec.n; i++) {
    const c0 = cpuUs();
    const w0 = process.hrtime.bigint();
    const err = await registerOnce(spec);
    const w1 = process.hrtime.bigint();
    const c1 = cpuUs();
    if (err) {
      failures++;
      process.stderr.write('node peer: ' + err + '\n');
    }
    samples.push({ cpu_us: c1 - c0, wall_us: Number((w1 - w0) / 1000n) });
  }
  return { samples, failures };
}

function derivedKey(groupKey, id) {
  return crypto.createHmac('sha256', Buffer.from(groupKey, 'base64')).update(id).digest('base64');
}

async function conc() {
  const deadline = Date.now() + spec.secs * 1000;
  let done = 0;
  let failures = 0;
  let seqNo = 0;
  const c0 = cpuUs();
  const w0 = process.hrtime.bigint();
  async function worker(w) {
    while (Date.now() < deadline) {
      const id = `${spec.prefix}-${w}-${seqNo++}`;
      const err = await registerOnce({ kind: 'symmetric', registrationId: id, key: derivedKey(spec.groupKey, id) });
      if (err) {
        failures++;
        if (failures <= 3) process.stderr.write('node peer: ' + err + '\n');
      } else {
        done++;
      }
    }
  }
  const workers = [];
  for (let w = 0; w < spec.concurrency; w++) workers.push(worker(w));
  await Promise.all(workers);
  const wall_us = Number((process.hrtime.bigint() - w0) / 1000n);
  return { registrations: done, failures, wall_us, cpu_us: cpuUs() - c0 };
}

(spec.mode === 'conc' ? conc() : seq()).then((out) => {
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(out.failures ? 1 : 0);
}).catch((e) => {
  process.stderr.write('node peer crashed: ' + (e && e.stack || e) + '\n');
  process.exit(3);
});
