//! Against a real software TPM (swtpm started per test; tpm2-tools as the service side).

mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use self::harness::{Service, SwTpm, fields, software_hmac};
use super::*;
use crate::credential::HmacKey;

const EK_POLICY: &str = "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa";

fn options(sw: &SwTpm) -> TpmOptions {
    TpmOptions {
        tcti: sw.tcti(),
        ..TpmOptions::default()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bytes a `tpm2_readpublic -o` file holds (TPM2B_PUBLIC).
fn readpublic(sw: &SwTpm, handle: &str) -> Vec<u8> {
    sw.tool("tpm2_readpublic", &["-c", handle, "-o", "pub.bin"], &sw.dir);
    std::fs::read(sw.dir.join("pub.bin")).unwrap()
}

pub(crate) fn key(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| seed.wrapping_add((i as u8).wrapping_mul(7)))
}

#[test]
fn reads_ek_and_srk_and_derives_the_registration_id() {
    let sw = SwTpm::start(true);
    let ek_tools = readpublic(&sw, "0x81010001");
    let srk_tools = readpublic(&sw, "0x81000001");

    let t0 = Instant::now();
    let tpm = Tpm::open(&options(&sw)).expect("open");
    let open_time = t0.elapsed();
    assert_eq!(
        tpm.endorsement_key(),
        ek_tools,
        "EK as tpm2_readpublic sees it"
    );
    assert_eq!(
        tpm.storage_root_key(),
        srk_tools,
        "SRK as tpm2_readpublic sees it"
    );
    let ek = tpm.endorsement_key();
    // TCG RSA-2048 EK template (PROTOCOL.md 5.4): RSA, SHA-256, 0x000300b2, PolicySecret(EH).
    assert_eq!(
        usize::from(u16::from_be_bytes([ek[0], ek[1]])),
        ek.len() - 2
    );
    assert_eq!(&ek[2..10], &[0, 1, 0, 0x0b, 0, 3, 0, 0xb2]);
    assert_eq!(hex(&ek[12..44]), EK_POLICY);
    let id = tpm.registration_id();
    assert_eq!(id.len(), 52);
    assert_eq!(id, registration_id_from_ek(&ek_tools));
    assert!(
        id.bytes()
            .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
    );
    eprintln!(
        "open: {:?}, {} TPM commands",
        open_time,
        tpm.command_count()
    );
    drop(tpm);

    let info = tpm_info(&options(&sw)).expect("tpm_info");
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(info.registration_id, id);
    assert_eq!(b64.decode(&info.endorsement_key).unwrap(), ek_tools);
    assert_eq!(b64.decode(&info.storage_root_key).unwrap(), srk_tools);
}

#[test]
fn creates_missing_ek_and_srk_only_when_asked() {
    let sw = SwTpm::start(false);
    let err = Tpm::open(&options(&sw)).expect_err("blank TPM without create_missing");
    assert_eq!(err.kind, ErrorKind::Tpm);
    assert!(
        err.message.contains("no EK at 0x81010001"),
        "{}",
        err.message
    );

    let created = Tpm::open(&TpmOptions {
        create_missing: true,
        ..options(&sw)
    })
    .expect("create EK and SRK");
    let ek = created.endorsement_key();
    let srk = created.storage_root_key();
    assert_eq!(&ek[2..10], &[0, 1, 0, 0x0b, 0, 3, 0, 0xb2], "EK template");
    assert_eq!(hex(&ek[12..44]), EK_POLICY);
    // SRK: RSA, SHA-256, fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|
    // restricted|decrypt, no policy, AES-128-CFB.
    assert_eq!(&srk[2..12], &[0, 1, 0, 0x0b, 0, 3, 0x04, 0x72, 0, 0]);
    assert_eq!(&srk[12..22], &[0, 0x06, 0, 0x80, 0, 0x43, 0, 0x10, 0x08, 0]);
    drop(created);

    // Persisted: a plain open finds them, and they work for the challenge (the SRK template
    // accepts a duplicated HMAC key, the EK a credential).
    let again = Arc::new(Tpm::open(&options(&sw)).expect("reopen"));
    assert_eq!(again.endorsement_key(), ek);
    let k = key(4);
    let blob = Service::new().make_blob(&ek, &srk, &k);
    again.activate(&blob).expect("activate on created keys");
    assert_eq!(
        again.hmac_key().hmac_sha256(b"x").unwrap(),
        software_hmac(&k, b"x")
    );
    drop(again);
    // tpm2-tools agrees on the bytes.
    assert_eq!(readpublic(&sw, "0x81010001"), ek);
    assert_eq!(readpublic(&sw, "0x81000001"), srk);
}

#[test]
fn activates_a_tpm2_tools_blob_and_signs_with_the_tpm() {
    let sw = SwTpm::start(true);
    let service = Service::new();
    let tpm = Arc::new(Tpm::open(&options(&sw)).expect("open"));
    let k1 = key(1);
    let blob = service.make_blob(&tpm.endorsement_key(), &tpm.storage_root_key(), &k1);

    let before = tpm.command_count();
    let t0 = Instant::now();
    tpm.activate(&blob).expect("activate");
    let first = (t0.elapsed(), tpm.command_count() - before);

    let sas = b"0ne00111111%2fregistrations%2f6rek5qncnygnkzflohxz4u6zlfly6ktm4klsc7xrbgvesqyllnfa\n1700000000";
    let key1 = tpm.hmac_key();
    let before = tpm.command_count();
    let t0 = Instant::now();
    let mac = key1.hmac_sha256(sas).expect("hmac");
    let one = (t0.elapsed(), tpm.command_count() - before);
    assert_eq!(mac, software_hmac(&k1, sas));
    assert!(key1.describe().contains("0x81000100"));

    // Around the input buffer (1024 on swtpm) and well past it: HMAC sequence commands.
    for len in [0usize, 1, 1023, 1024, 1025, 2048, 3000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let before = tpm.command_count();
        let t0 = Instant::now();
        let mac = key1
            .hmac_sha256(&data)
            .unwrap_or_else(|e| panic!("hmac of {len}: {e}"));
        assert_eq!(mac, software_hmac(&k1, &data), "HMAC of {len} bytes");
        if len == 3000 {
            eprintln!(
                "HMAC of 3000 bytes (sequence): {:?}, {} TPM commands",
                t0.elapsed(),
                tpm.command_count() - before
            );
        }
    }
    // Shared between threads: calls are serialised, every answer is right.
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let key1 = &key1;
            scope.spawn(move || {
                for i in 0..10u8 {
                    let data = [t, i];
                    let until = Instant::now() + Duration::from_secs(20);
                    let mac = key1.hmac_sha256_until(&data, until, None).unwrap();
                    assert_eq!(mac, software_hmac(&k1, &data));
                }
            });
        }
    });
    // The sequence path reconnected: the short path still works afterwards.
    assert_eq!(key1.hmac_sha256(sas).unwrap(), software_hmac(&k1, sas));

    // Re-activation replaces the persisted key.
    let k2 = key(2);
    let blob2 = service.make_blob(&tpm.endorsement_key(), &tpm.storage_root_key(), &k2);
    let before = tpm.command_count();
    let t0 = Instant::now();
    tpm.activate(&blob2).expect("re-activate");
    let second = (t0.elapsed(), tpm.command_count() - before);
    assert_eq!(key1.hmac_sha256(sas).unwrap(), software_hmac(&k2, sas));
    eprintln!(
        "activation: {:?} / {} commands (first), {:?} / {} commands (replacing); \
         HMAC: {:?} / {} command",
        first.0, first.1, second.0, second.1, one.0, one.1
    );
    assert_eq!(one.1, 1, "one TPM2_HMAC per short signature");
    drop(key1);
    drop(tpm);

    // The key persisted: a new connection signs with k2, and tpm2-tools sees one object there.
    let tpm = Arc::new(Tpm::open(&options(&sw)).expect("reopen"));
    assert_eq!(
        tpm.hmac_key().hmac_sha256(sas).unwrap(),
        software_hmac(&k2, sas)
    );
    drop(tpm);
    let listed =
        String::from_utf8(sw.tool("tpm2_getcap", &["handles-persistent"], &sw.dir)).unwrap();
    assert_eq!(listed.matches("0x81000100").count(), 1, "{listed}");

    // The hub key arrives the same way and replaces the DPS key.
    let tpm = Arc::new(Tpm::open(&options(&sw)).expect("reopen"));
    let k3 = key(3);
    let hub_blob = service.make_blob(&tpm.endorsement_key(), &tpm.storage_root_key(), &k3);
    let hub = tpm.import_hub_key(&hub_blob).expect("hub key");
    let hub_sas = b"myhub.azure-devices.net%2fdevices%2fdev1\n1700000000";
    assert_eq!(
        hub.hmac_sha256(hub_sas).unwrap(),
        software_hmac(&k3, hub_sas)
    );
}

#[test]
fn refuses_tampered_and_foreign_blobs_with_activation_failed() {
    let sw = SwTpm::start(true);
    let service = Service::new();
    let tpm = Arc::new(Tpm::open(&options(&sw)).expect("open"));
    let k = key(9);
    let good = service.make_blob(&tpm.endorsement_key(), &tpm.storage_root_key(), &k);
    let f = fields(&good);
    assert_eq!(f.len(), 6, "five fields and an empty encUriData");

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut flip = |name: &'static str, field: usize, at: usize| {
        let mut b = good.clone();
        b[f[field].0 + at] ^= 0x01;
        cases.push((name, b));
    };
    flip("credentialBlob integrity HMAC", 0, 5);
    flip("credentialBlob encIdentity", 0, f[0].1 - 1);
    flip("encryptedSecret", 1, 100);
    flip("dupBlob", 2, 40);
    flip("encWrapKey", 3, 7);
    // Made for another TPM: the credential is bound to a different "EK" (here the SRK).
    let foreign = service.make_blob(&tpm.storage_root_key(), &tpm.storage_root_key(), &k);
    cases.push(("blob for another EK", foreign));
    cases.push(("truncated", good[..good.len() - 30].to_vec()));
    cases.push(("trailing garbage", [good.as_slice(), &[1, 2, 3]].concat()));

    for (name, blob) in cases {
        let err = tpm.activate(&blob).expect_err(name);
        assert_eq!(err.kind, ErrorKind::TpmActivationFailed, "{name}: {err}");
        if !matches!(name, "truncated" | "trailing garbage") {
            assert!(err.message.contains("TPM_RC 0x"), "{name}: {}", err.message);
        }
        // No key material in the error.
        for secret in [hex(&k), hex(&k[..16])] {
            assert!(!err.message.contains(&secret), "{name}");
        }
        eprintln!("{name}: {}", err.message);
    }
    // Nothing leaked into the TPM (no 0x902) and the good blob still activates.
    tpm.activate(&good).expect("good blob after the refusals");
    let data = b"after refusals";
    assert_eq!(
        tpm.hmac_key().hmac_sha256(data).unwrap(),
        software_hmac(&k, data)
    );
    let dbg = format!("{:?} {:?}", tpm, tpm.hmac_key());
    assert!(
        !dbg.contains(&hex(&k)) && dbg.contains("0x81000100"),
        "{dbg}"
    );
}

#[test]
fn a_tpm_that_goes_away_gives_a_clear_error_not_a_hang() {
    let mut sw = SwTpm::start(true);
    let service = Service::new();
    let tpm = Arc::new(Tpm::open(&options(&sw)).expect("open"));
    let k = key(5);
    let blob = service.make_blob(&tpm.endorsement_key(), &tpm.storage_root_key(), &k);
    tpm.activate(&blob).expect("activate");
    let hk = tpm.hmac_key();
    sw.kill();
    let t0 = Instant::now();
    let err = hk.hmac_sha256(b"data").expect_err("TPM killed");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(err.kind, ErrorKind::Tpm, "{err}");
    assert!(err.message.contains("TPM2_HMAC"), "{}", err.message);
    eprintln!("killed TPM: {} ({:?})", err.message, t0.elapsed());
    assert!(
        err.message.contains("TCTI layer: I/O error"),
        "{}",
        err.message
    );
    // The next call reconnects, and says why it cannot.
    let err = tpm.activate(&blob).expect_err("still gone");
    assert_eq!(err.kind, ErrorKind::Tpm, "{err}");
    assert!(
        err.message.contains("reconnecting to the TPM through TCTI"),
        "{}",
        err.message
    );
    eprintln!("still gone: {}", err.message);
    // The TPM comes back (same state): the same Tpm reconnects and the persisted key signs.
    sw.restart();
    assert_eq!(hk.hmac_sha256(b"back").unwrap(), software_hmac(&k, b"back"));

    // A TPM that stops answering (SIGSTOP): the deadline ends the wait.
    let sw = SwTpm::start(true);
    let tpm = Tpm::open(&TpmOptions {
        command_timeout: Duration::from_millis(800),
        ..options(&sw)
    })
    .expect("open");
    let blob = service.make_blob(&tpm.endorsement_key(), &tpm.storage_root_key(), &k);
    sw.signal("STOP");
    let t0 = Instant::now();
    let err = tpm.activate(&blob).expect_err("TPM stopped");
    let waited = t0.elapsed();
    assert_eq!(err.kind, ErrorKind::DeadlineExceeded, "{err}");
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The connection is abandoned: later calls fail at once.
    let t0 = Instant::now();
    let err = tpm
        .hmac_until(b"x", Instant::now() + Duration::from_secs(5), None)
        .expect_err("abandoned");
    assert_eq!(err.kind, ErrorKind::Tpm);
    assert!(err.message.contains("abandoned"), "{}", err.message);
    assert!(t0.elapsed() < Duration::from_millis(100));
    // Cancellation ends a wait too.
    sw.signal("CONT");
    drop(tpm);
}

#[test]
fn cancel_token_ends_a_wait_on_a_stopped_tpm() {
    let sw = SwTpm::start(true);
    let tpm = Tpm::open(&options(&sw)).expect("open");
    sw.signal("STOP");
    let cancel = Arc::new(CancelToken::default());
    let c2 = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        c2.cancel();
    });
    let t0 = Instant::now();
    let err = tpm
        .hmac_until(
            b"x",
            Instant::now() + Duration::from_secs(30),
            Some(&cancel),
        )
        .expect_err("cancelled");
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    canceller.join().unwrap();
    sw.signal("CONT");
}

mod tabrmd;
mod unit;

#[test]
fn mssim_tcti_and_its_framing_for_hmac_sequences() {
    let sw = SwTpm::start(true);
    let service = Service::new();
    let proxy = harness::MssimProxy::start(sw.port);
    let tpm = Arc::new(
        Tpm::open(&TpmOptions {
            tcti: format!("mssim:host=127.0.0.1,port={}", proxy.port),
            ..TpmOptions::default()
        })
        .expect("open through mssim"),
    );
    let seen = || proxy.commands.load(std::sync::atomic::Ordering::SeqCst);
    // The library's own count agrees with the commands that crossed the wire.
    assert_eq!(tpm.command_count(), seen(), "open");
    let k = key(7);
    let blob = service.make_blob(&tpm.endorsement_key(), &tpm.storage_root_key(), &k);
    let before = seen();
    tpm.activate(&blob).expect("activate through mssim");
    assert_eq!(seen() - before, 9, "activation with an empty identity slot");
    let before = seen();
    tpm.activate(&blob).expect("re-activate through mssim");
    assert_eq!(seen() - before, 9, "activation replacing the key");
    let hk = tpm.hmac_key();
    for (len, commands) in [(10usize, 1u64), (1024, 1), (5000, 6 + 6)] {
        let data = vec![0x5a; len];
        let before = seen();
        assert_eq!(
            hk.hmac_sha256(&data).unwrap(),
            software_hmac(&k, &data),
            "{len}"
        );
        // 5000 bytes: HMAC_Start, 4 SequenceUpdate (1024, 1024, 1024, 904), SequenceComplete
        // (the last 1024), then 6 to reconnect (GetCapability + ReadPublic for EK, SRK and
        // the identity key).
        assert_eq!(seen() - before, commands, "HMAC of {len}");
    }
    assert_eq!(tpm.command_count(), seen(), "total");
}
