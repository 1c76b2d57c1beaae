'use strict';
// Drives dps-emulator with Microsoft's own Node.js DPS client (HTTP transport).
// Usage: node conformance.js <spec.json>
// spec: { port, ca, idScope, cases: [ { name, registrationId, kind: "symmetric"|"x509",
//          key?, cert?, keyPem?, payload? } ] }
// Prints one JSON object per case on stdout: { name, ok, result?, error? }.

const fs = require('fs');
const https = require('https');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
const HttpBase = require('azure-iot-http-base').Http;
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { X509Security } = require('azure-iot-security-x509');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

// The client calls https.request with host only (port 443): an agent rewrites the port.
const agent = new https.Agent({ keepAlive: true });
const createConnection = agent.createConnection.bind(agent);
agent.createConnection = (options, cb) => createConnection(Object.assign({}, options, { port: spec.port }), cb);

function transport() {
  const base = new HttpBase();
  base.setOptions({ ca: spec.ca, http: { agent } });
  return new Http(base);
}

function runCase(c) {
  return new Promise((resolve) => {
    let security;
    if (c.kind === 'symmetric') {
      security = new SymmetricKeySecurityClient(c.registrationId, c.key);
    } else {
      security = new X509Security(c.registrationId, { cert: c.cert, key: c.keyPem });
    }
    const client = ProvisioningDeviceClient.create('localhost', spec.idScope, transport(), security);
    if (c.payload) {
      client.setProvisioningPayload(c.payload);
    }
    const timer = setTimeout(() => resolve({ name: c.name, ok: false, error: { name: 'Timeout', message: 'no answer in 20 s' } }), 20000);
    client.register((err, result) => {
      clearTimeout(timer);
      if (err) {
        resolve({
          name: c.name,
          ok: false,
          error: {
            name: err.name || err.constructor.name,
            message: err.message,
            statusCode: err.response ? err.response.statusCode : (err.transportError && err.transportError.response ? err.transportError.response.statusCode : undefined),
            responseBody: err.responseBody || (err.transportError ? err.transportError.responseBody : undefined),
          },
        });
      } else {
        resolve({ name: c.name, ok: true, result });
      }
    });
  });
}

(async () => {
  for (const c of spec.cases) {
    const out = await runCase(c);
    process.stdout.write(JSON.stringify(out) + '\n');
  }
  agent.destroy();
  process.exit(0);
})().catch((e) => {
  process.stderr.write('conformance harness crashed: ' + (e && e.stack || e) + '\n');
  process.exit(3);
});
