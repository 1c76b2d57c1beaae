'use strict';
// Drives dps-emulator's TPM attestation with Microsoft's Node.js TPM client
// (azure-iot-security-tpm over tss.js, HTTP transport) on a software TPM (swtpm).
// Usage: node tpm.js <spec.json>
// spec: { port, ca, idScope, tpmPort, cases: [ { name, registrationId?, payload?, signData } ] }
//   registrationId absent: the client derives it from the EK (PROTOCOL.md 5.4).
//   signData: signed after registration with the key the client imported from the final
//   answer (the IoT Hub key), so the test can check that key.
// Prints one JSON object per case on stdout:
//   { name, ok, registrationId, result?, hubSignature?, error?, crashed? }.
//
// tss.js is pointed at swtpm's command port in "Linux TRM" mode (raw TPM commands framed as
// the resource manager expects), not its simulator mode, whose platform handshake swtpm does
// not speak. azure-iot-security-tpm 1.9.3 throws an uncaught TypeError when
// ActivateCredential fails; that is reported as { ok: false, crashed: true } for the case.

const fs = require('fs');
const https = require('https');
const tss = require('tss.js');
const { TpmSecurityClient } = require('azure-iot-security-tpm');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
const HttpBase = require('azure-iot-http-base').Http;

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

let settle = null;
process.on('uncaughtException', (e) => {
  if (settle) {
    settle({ ok: false, crashed: true, error: { name: e.name || e.constructor.name, message: e.message } });
  } else {
    process.stderr.write('tpm harness crashed: ' + (e && e.stack || e) + '\n');
    process.exit(3);
  }
});

function errorInfo(err) {
  return {
    name: err.name || err.constructor.name,
    message: err.message,
    statusCode: err.response ? err.response.statusCode : (err.transportError && err.transportError.response ? err.transportError.response.statusCode : undefined),
    responseBody: err.responseBody || (err.transportError ? err.transportError.responseBody : undefined),
  };
}

function runCase(c) {
  const tpm = new tss.Tpm(false);
  tpm.device = new tss.TpmTcpDevice('127.0.0.1', spec.tpmPort, true);
  const security = new TpmSecurityClient(c.registrationId, tpm);
  const started = Date.now();
  return new Promise((resolve) => {
    const timer = setTimeout(() => done({ ok: false, error: { name: 'Timeout', message: 'no answer in 30 s' } }), 30000);
    function done(out) {
      clearTimeout(timer);
      settle = null;
      try { tpm.close(); } catch (_) { /* already closed */ }
      resolve(Object.assign({ name: c.name, ms: Date.now() - started }, out));
    }
    settle = done;
    security.getRegistrationId((err, registrationId) => {
      if (err) {
        done({ ok: false, error: errorInfo(err) });
        return;
      }
      const client = ProvisioningDeviceClient.create('localhost', spec.idScope, transport(), security);
      if (c.payload) {
        client.setProvisioningPayload(c.payload);
      }
      client.register((err, result) => {
        if (err) {
          done({ ok: false, registrationId, error: errorInfo(err) });
          return;
        }
        security.signWithIdentity(Buffer.from(c.signData), (err, sig) => {
          if (err) {
            done({ ok: false, registrationId, result, error: errorInfo(err) });
          } else {
            done({ ok: true, registrationId, result, hubSignature: Buffer.from(sig).toString('base64') });
          }
        });
      });
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
  process.stderr.write('tpm harness crashed: ' + (e && e.stack || e) + '\n');
  process.exit(3);
});
