//! End-to-end flows over real TLS: symmetric keys, X.509, validation, reprovisioning.

use dps_emulator::pki;
use dps_test_support::*;

fn is_dps_timestamp(s: &str) -> bool {
    // 2022-08-31T22:02:50.5163352Z
    let b = s.as_bytes();
    b.len() == 28
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[27] == b'Z'
        && b[20..27].iter().all(u8::is_ascii_digit)
}

fn sym_toml() -> String {
    format!(
        r#"{}
[[enrollments]]
registration_id = "dev-sym"
attestation = "symmetric_key"
primary_key = "{KEY}"
secondary_key = "{KEY2}"
device_id = "custom-device"
allocation = "static"
hubs = ["hub-b.azure-devices.net"]

[[enrollments]]
group_id = "grp"
attestation = "symmetric_key"
primary_key = "{GROUP_KEY}"
echo_payload = true

[[enrollments]]
registration_id = "dev-off"
attestation = "symmetric_key"
primary_key = "{KEY}"
enabled = false
"#,
        base_toml()
    )
}

#[test]
fn individual_symmetric_key_full_flow_on_one_connection() {
    let emu = start(&sym_toml());
    let mut c = Client::connect(&emu);
    let tok = sas(KEY, "dev-sym");
    let r = c.request(
        "PUT",
        &reg_path("dev-sym"),
        &[("Authorization", &tok), JSON],
        Some(r#"{"registrationId":"dev-sym"}"#),
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        r.header("Transfer-Encoding"),
        Some("chunked"),
        "like the real service"
    );
    assert_eq!(r.header("Retry-After"), Some("0"));
    assert_eq!(
        r.header("Location").unwrap(),
        "https://localhost/0ne00000001/registrations/dev-sym/register"
    );
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert!(r.header("x-ms-request-id").is_some());
    let j = r.json();
    assert_eq!(j["status"], "assigning");
    let op = j["operationId"].as_str().unwrap().to_string();
    assert!(op.starts_with("5.") && op.len() > 40, "{op}");

    let p = c.request(
        "GET",
        &op_path("dev-sym", &op),
        &[("Authorization", &tok)],
        None,
    );
    assert_eq!(p.status, 202);
    assert_eq!(p.json()["registrationState"]["status"], "assigning");
    assert_eq!(p.header("Retry-After"), Some("0"));

    let p = c.request(
        "GET",
        &op_path("dev-sym", &op),
        &[("Authorization", &tok)],
        None,
    );
    assert_eq!(p.status, 200);
    // member order as the real service sends it
    let text = String::from_utf8(p.body.clone()).unwrap();
    let order: Vec<usize> = [
        "\"operationId\"",
        "\"status\"",
        "\"registrationState\":{\"symmetricKey\":{}",
        "\"registrationId\"",
        "\"createdDateTimeUtc\"",
        "\"assignedHub\"",
        "\"deviceId\"",
        "\"substatus\"",
        "\"lastUpdatedDateTimeUtc\"",
        "\"etag\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} in {text}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    let j = p.json();
    assert_eq!(j["operationId"], op.as_str());
    assert_eq!(j["status"], "assigned");
    let rs = &j["registrationState"];
    assert_eq!(rs["registrationId"], "dev-sym");
    assert_eq!(rs["assignedHub"], "hub-b.azure-devices.net");
    assert_eq!(rs["deviceId"], "custom-device");
    assert_eq!(rs["status"], "assigned");
    assert_eq!(rs["substatus"], "initialAssignment");
    assert!(rs["symmetricKey"].is_object());
    assert!(is_dps_timestamp(rs["createdDateTimeUtc"].as_str().unwrap()));
    assert!(is_dps_timestamp(
        rs["lastUpdatedDateTimeUtc"].as_str().unwrap()
    ));
    assert!(!rs["etag"].as_str().unwrap().is_empty());
    assert!(rs.get("payload").is_none());

    // terminal answer is repeated
    let p2 = c.request(
        "GET",
        &op_path("dev-sym", &op),
        &[("Authorization", &tok)],
        None,
    );
    assert_eq!(p2.json(), j);

    // lookup
    let l = c.request(
        "POST",
        &lookup_path("dev-sym"),
        &[("Authorization", &tok), JSON],
        Some(r#"{"registrationId":"dev-sym"}"#),
    );
    assert_eq!(l.status, 200);
    assert_eq!(l.json()["assignedHub"], "hub-b.azure-devices.net");

    let cnt = emu.counters();
    assert_eq!(cnt.tcp_connections, 1);
    assert_eq!(cnt.tls_handshakes, 1);
    assert_eq!(cnt.requests, 5);
    assert_eq!(cnt.get("register 202"), 1);
    assert_eq!(cnt.get("operation 202"), 1);
    assert_eq!(cnt.get("operation 200"), 2);
    assert_eq!(cnt.get("lookup 200"), 1);
    assert_eq!(emu.log_lines().len(), 5);
    assert!(!emu.log_lines().concat().contains("sig="));
    emu.stop();
}

#[test]
fn secondary_key_and_wrong_key() {
    let emu = start(&sym_toml());
    let mut c = Client::connect(&emu);
    let r = register_sas(&mut c, "dev-sym", KEY2, None);
    assert_eq!(r.status, 200);
    let bad = register_sas(&mut c, "dev-sym", GROUP_KEY, None);
    assert_eq!(bad.status, 401);
    let j = bad.json();
    assert_eq!(j["errorCode"], 401002);
    assert_eq!(
        bad.header("x-ms-request-id").unwrap(),
        j["trackingId"].as_str().unwrap()
    );
    assert!(is_dps_timestamp(j["timestampUtc"].as_str().unwrap()));
    // unknown device
    let r = register_sas(&mut c, "nobody", KEY, None);
    assert_eq!(r.status, 401);
    // no credentials
    let r = c.request("PUT", &reg_path("dev-sym"), &[JSON], Some("{}"));
    assert_eq!(r.status, 401);
    // expired token
    let sr = format!("{SCOPE}/registrations/dev-sym");
    let se = now() - 1;
    let tok = format!(
        "SharedAccessSignature sr={sr}&sig={}&se={se}",
        urlenc(&sign(KEY, &sr, se))
    );
    let r = c.request(
        "PUT",
        &reg_path("dev-sym"),
        &[("Authorization", &tok), JSON],
        Some("{}"),
    );
    assert_eq!(r.status, 401);
    // a poll needs valid credentials too
    let tok = sas(KEY, "dev-sym");
    let r = c.request(
        "PUT",
        &reg_path("dev-sym"),
        &[("Authorization", &tok), JSON],
        Some("{}"),
    );
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    let p = c.request("GET", &op_path("dev-sym", &op), &[], None);
    assert_eq!(p.status, 401);
    let p = c.request(
        "GET",
        &op_path("dev-sym", "5.nope"),
        &[("Authorization", &tok)],
        None,
    );
    assert_eq!(p.status, 404);
    assert_eq!(p.json()["errorCode"], 404002);
}

#[test]
fn group_key_node_style_token_and_payload_echo() {
    let emu = start(&sym_toml());
    let mut c = Client::connect(&emu);
    let regid = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
    let key = derived(GROUP_KEY, regid);
    assert_eq!(key, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=");
    // Node form: raw sr, order sr, sig, skn, se
    let sr = format!("{SCOPE}/registrations/{regid}");
    let se = now() + 60;
    let tok = format!(
        "SharedAccessSignature sr={sr}&sig={}&skn=registration&se={se}",
        urlenc(&sign(&key, &sr, se))
    );
    let body = format!(r#"{{"registrationId":"{regid}","payload":{{"model":"x","n":[1,2]}}}}"#);
    let r = c.request(
        "PUT",
        &reg_path(regid),
        &[("Authorization", &tok), JSON],
        Some(&body),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    let mut last;
    loop {
        // Node sends {} with a JSON content type on GETs
        last = c.request(
            "GET",
            &op_path(regid, &op),
            &[("Authorization", &tok), JSON],
            Some("{}"),
        );
        if last.status != 202 {
            break;
        }
    }
    assert_eq!(last.status, 200);
    let rs = &last.json()["registrationState"];
    assert_eq!(rs["payload"], serde_json::json!({"model":"x","n":[1,2]}));
    assert_eq!(rs["symmetricKey"]["enrollmentGroupId"], "grp");
    assert_eq!(rs["deviceId"], regid);
    // the group key itself is not a device key
    let r = register_sas(&mut c, regid, GROUP_KEY, None);
    assert_eq!(r.status, 401);
}

#[test]
fn disabled_enrollment() {
    let emu = start(&sym_toml());
    let mut c = Client::connect(&emu);
    let r = register_sas(&mut c, "dev-off", KEY, None);
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["status"], "disabled");
    assert_eq!(j["registrationState"]["status"], "disabled");
}

#[test]
fn request_validation() {
    let emu = start(&sym_toml());
    let mut c = Client::connect(&emu);
    let tok = sas(KEY, "dev-sym");
    let auth = ("Authorization", tok.as_str());
    let body = Some(r#"{"registrationId":"dev-sym"}"#);
    let put = |c: &mut Client, path: &str, hs: &[(&str, &str)], b: Option<&str>| {
        c.request("PUT", path, hs, b)
    };

    let r = put(
        &mut c,
        &format!("/{SCOPE}/registrations/dev-sym/register"),
        &[auth, JSON],
        body,
    );
    assert_eq!(
        (r.status, r.json()["errorCode"].as_u64()),
        (400, Some(400001))
    );
    let r = put(
        &mut c,
        &format!("/{SCOPE}/registrations/dev-sym/register?api-version=2099-01-01"),
        &[auth, JSON],
        body,
    );
    assert_eq!(r.status, 400);
    let r = put(
        &mut c,
        &format!("/0neFFFFFFFF/registrations/dev-sym/register?api-version={API_VERSION}"),
        &[auth, JSON],
        body,
    );
    assert_eq!(
        (r.status, r.json()["errorCode"].as_u64()),
        (404, Some(404001))
    );
    // form-encoded body: 415
    let r = put(
        &mut c,
        &reg_path("dev-sym"),
        &[auth, ("Content-Type", "application/x-www-form-urlencoded")],
        Some("registrationId=dev-sym&type=x509"),
    );
    assert_eq!(
        (r.status, r.json()["errorCode"].as_u64()),
        (415, Some(415001))
    );
    let r = put(&mut c, &reg_path("dev-sym"), &[auth], body);
    assert_eq!(r.status, 415);
    // not an object / bad JSON / mismatch
    for b in [
        "[1,2]",
        "\"x\"",
        "{bad",
        "",
        r#"{"registrationId":"other"}"#,
        r#"{"registrationId":5}"#,
        r#"{"type":"x509"}"#,
    ] {
        let r = put(&mut c, &reg_path("dev-sym"), &[auth, JSON], Some(b));
        assert_eq!(r.status, 400, "{b}");
    }
    // payload only from 2019-03-31
    let pb = Some(r#"{"registrationId":"dev-sym","payload":{"a":1}}"#);
    let r = put(
        &mut c,
        &format!("/{SCOPE}/registrations/dev-sym/register?api-version=2018-11-01"),
        &[auth, JSON],
        pb,
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("payload"));
    let r = put(
        &mut c,
        &format!("/{SCOPE}/registrations/dev-sym/register?api-version=2019-03-31"),
        &[auth, JSON],
        pb,
    );
    assert_eq!(r.status, 202);
    // tolerated: Content-Encoding utf-8, forceRegistration, charset-less content type, {} body, case
    let r = put(
        &mut c,
        &format!(
            "/{SCOPE}/registrations/dev-sym/register?api-version={API_VERSION}&forceRegistration=true"
        ),
        &[
            auth,
            ("Content-Type", "application/json"),
            ("Content-Encoding", "utf-8"),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 202);
    let r = put(
        &mut c,
        &reg_path("dev-sym"),
        &[auth, JSON],
        Some(r#"{"registrationId":"DEV-SYM"}"#),
    );
    assert_eq!(r.status, 202);
    // wrong method, unknown path
    let r = c.request("GET", &reg_path("dev-sym"), &[auth], None);
    assert_eq!(r.status, 405);
    let r = c.request("GET", "/", &[], None);
    assert_eq!(r.status, 404);
    // lookup before any registration of that device
    let tok2 = sas(KEY, "dev-off");
    let r = c.request(
        "POST",
        &lookup_path("dev-off"),
        &[("Authorization", &tok2), JSON],
        Some("{}"),
    );
    assert_eq!(
        (r.status, r.json()["errorCode"].as_u64()),
        (404, Some(404201))
    );
    let cnt = emu.counters();
    assert!(
        cnt.get("register 415") == 2 && cnt.get("other 404") == 1 && cnt.get("register 405") == 1
    );
    assert_eq!(cnt.get("operation 405"), 0);
    assert_eq!(cnt.tcp_connections, 1);
}

fn x509_toml(individual: &pki::Issued, ca: &pki::TestCa) -> String {
    format!(
        r#"{}
[[enrollments]]
registration_id = "dev-x509"
attestation = "x509"
thumbprint = "{}"

[[enrollments]]
group_id = "x509-group"
attestation = "x509"
ca_pem = """{}"""
payload = {{ tier = "gold" }}
"#,
        base_toml(),
        individual.sha256_thumbprint.to_lowercase(),
        ca.cert_pem()
    )
}

#[test]
fn x509_individual_and_group_chains() {
    let dev = pki::self_signed_device("dev-x509");
    let root = pki::TestCa::new("Group Root");
    let inter = root.intermediate("Group Intermediate");
    let emu = start(&x509_toml(&dev, &root));

    for tls12 in [false, true] {
        let cfg = tls_config(&emu.ca_pem(), Some((&dev.cert_pem, &dev.key_pem)), tls12);
        let mut c = Client::connect_with(&emu, cfg);
        let r = register_x509(&mut c, "dev-x509");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let rs = &r.json()["registrationState"];
        assert_eq!(rs["x509"], serde_json::json!({}));
        assert_eq!(rs["deviceId"], "dev-x509");
    }

    // group: leaf + intermediate, CN = registration id
    let leaf = inter.issue_device("grp-dev-1");
    let mut c = Client::connect_cert(&emu, &leaf.chain_pem, &leaf.key_pem);
    let r = register_x509(&mut c, "grp-dev-1");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let rs = &r.json()["registrationState"];
    assert_eq!(rs["x509"]["enrollmentGroupId"], "x509-group");
    assert_eq!(rs["payload"]["tier"], "gold");

    // leaf directly under the root
    let leaf = root.issue_device("grp-dev-2");
    let mut c = Client::connect_cert(&emu, &leaf.chain_pem, &leaf.key_pem);
    assert_eq!(register_x509(&mut c, "grp-dev-2").status, 200);

    // CN != registration id
    let mut c = Client::connect_cert(&emu, &leaf.chain_pem, &leaf.key_pem);
    let r = register_x509(&mut c, "someone-else");
    assert_eq!(
        (r.status, r.json()["errorCode"].as_u64()),
        (401, Some(401002))
    );

    // intermediate not sent: chain cannot be built
    let leaf3 = inter.issue_device("grp-dev-3");
    let mut c = Client::connect_cert(&emu, &leaf3.cert_pem, &leaf3.key_pem);
    assert_eq!(register_x509(&mut c, "grp-dev-3").status, 401);

    // a different CA
    let other = pki::TestCa::new("Other Root").issue_device("grp-dev-4");
    let mut c = Client::connect_cert(&emu, &other.chain_pem, &other.key_pem);
    assert_eq!(register_x509(&mut c, "grp-dev-4").status, 401);

    // self-signed cert with the right CN but unknown thumbprint
    let stranger = pki::self_signed_device("dev-x509");
    let mut c = Client::connect_cert(&emu, &stranger.cert_pem, &stranger.key_pem);
    assert_eq!(register_x509(&mut c, "dev-x509").status, 401);
    assert!(emu.log_lines().iter().any(|l| l.contains("x509 refused")));
}

#[test]
fn x509_refusals_say_ca_certificate_not_found_when_the_chain_stops_short() {
    let dev = pki::self_signed_device("dev-x509");
    let root = pki::TestCa::new("Group Root");
    let inter = root.intermediate("Group Intermediate");
    let emu = start(&x509_toml(&dev, &root));
    let message = |chain: &str, key: &str, regid: &str| {
        let mut c = Client::connect_cert(&emu, chain, key);
        let r = register_x509(&mut c, regid);
        assert_eq!(
            (r.status, r.json()["errorCode"].as_u64()),
            (401, Some(401002))
        );
        r.json()["message"].as_str().unwrap().to_string()
    };
    // the group device sent only its leaf (PROTOCOL.md: the most reported X.509 failure)
    let leaf = inter.issue_device("grp-dev-1");
    assert_eq!(
        message(&leaf.cert_pem, &leaf.key_pem, "grp-dev-1"),
        "CA certificate not found."
    );
    // a chain to a CA no group has
    let other = pki::TestCa::new("Other Root").issue_device("grp-dev-2");
    assert_eq!(
        message(&other.chain_pem, &other.key_pem, "grp-dev-2"),
        "CA certificate not found."
    );
    // the whole chain, but the CN is not the registration id: the certificate is invalid
    assert_eq!(
        message(&leaf.chain_pem, &leaf.key_pem, "someone-else"),
        "Invalid certificate."
    );
    // and with the chain it works
    let mut c = Client::connect_cert(&emu, &leaf.chain_pem, &leaf.key_pem);
    assert_eq!(register_x509(&mut c, "grp-dev-1").status, 200);
}

fn openssl_self_signed(
    dir: &std::path::Path,
    cn: &str,
    newkey: &[&str],
) -> Option<(String, String)> {
    let (k, c) = (dir.join(format!("{cn}.key")), dir.join(format!("{cn}.pem")));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={cn}"))
        .args(newkey)
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((
        std::fs::read_to_string(&c).unwrap(),
        std::fs::read_to_string(&k).unwrap(),
    ))
}

#[test]
fn x509_openssl_ca_true_self_signed_leaves_ec_and_rsa() {
    // `openssl req -x509` makes CA:TRUE leaves: accepted by thumbprint. RSA keys work too.
    let dir = std::env::temp_dir().join(format!("dps-emu-openssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(ec) = openssl_self_signed(
        &dir,
        "dev-ec",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ) else {
        eprintln!("openssl not available; skipping");
        return;
    };
    let rsa = openssl_self_signed(&dir, "dev-rsa", &["-newkey", "rsa:2048"]).unwrap();
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let tp = |pem: &str| -> String {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let hex: String = ring::digest::digest(&ring::digest::SHA256, der.as_ref())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}:"))
            .collect();
        hex.trim_end_matches(':').to_string()
    };
    let emu = start(&format!(
        "{}\n[[enrollments]]\nregistration_id = \"dev-ec\"\nattestation = \"x509\"\nthumbprint = \"{}\"\n\n[[enrollments]]\nregistration_id = \"dev-rsa\"\nattestation = \"x509\"\nthumbprint = \"{}\"\n",
        base_toml(),
        tp(&ec.0),
        tp(&rsa.0)
    ));
    for tls12 in [false, true] {
        let cfg = tls_config(&emu.ca_pem(), Some((&ec.0, &ec.1)), tls12);
        let mut cl = Client::connect_with(&emu, cfg);
        assert_eq!(register_x509(&mut cl, "dev-ec").status, 200);
        let cfg = tls_config(&emu.ca_pem(), Some((&rsa.0, &rsa.1)), tls12);
        let mut cl = Client::connect_with(&emu, cfg);
        assert_eq!(register_x509(&mut cl, "dev-rsa").status, 200);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_versions_are_configurable() {
    let emu = start(&format!("{}\n[tls]\nversions = [\"1.3\"]\n", base_toml()));
    let sock = std::net::TcpStream::connect(("127.0.0.1", emu.port())).unwrap();
    let conn = rustls::ClientConnection::new(
        tls_config(&emu.ca_pem(), None, true),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    let mut failed = false;
    while s.conn.is_handshaking() {
        if s.conn.complete_io(&mut s.sock).is_err() {
            failed = true;
            break;
        }
    }
    assert!(
        failed,
        "TLS 1.2 client must be refused by a 1.3-only emulator"
    );
    let mut c = Client::connect(&emu);
    assert_eq!(c.request("GET", "/", &[], None).status, 404);
}

#[test]
fn reprovisioning_substatus() {
    let emu = start(&format!(
        r#"{}
[[enrollments]]
registration_id = "mover"
attestation = "symmetric_key"
primary_key = "{KEY}"
allocation = "round_robin"

[[enrollments]]
registration_id = "sticky"
attestation = "symmetric_key"
primary_key = "{KEY}"
initial_hub = "hub-a.azure-devices.net"
allocation = "static"
hubs = ["hub-b.azure-devices.net"]
reprovision = "reset"
"#,
        base_toml()
    ));
    let mut c = Client::connect(&emu);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = register_sas(&mut c, "mover", KEY, None);
        let rs = r.json()["registrationState"].clone();
        seen.push((
            rs["assignedHub"].as_str().unwrap().to_string(),
            rs["substatus"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        seen,
        vec![
            ("hub-a.azure-devices.net".into(), "initialAssignment".into()),
            (
                "hub-b.azure-devices.net".into(),
                "deviceDataMigrated".into()
            ),
            (
                "hub-a.azure-devices.net".into(),
                "reprovisionedToInitialAssignment".into()
            ),
            (
                "hub-b.azure-devices.net".into(),
                "deviceDataMigrated".into()
            ),
        ]
    );
    let a = register_sas(&mut c, "sticky", KEY, None).json();
    assert_eq!(
        a["registrationState"]["assignedHub"],
        "hub-a.azure-devices.net"
    );
    let b = register_sas(&mut c, "sticky", KEY, None).json();
    assert_eq!(
        b["registrationState"]["assignedHub"],
        "hub-b.azure-devices.net"
    );
    assert_eq!(b["registrationState"]["substatus"], "deviceDataReset");
    assert_eq!(
        a["registrationState"]["createdDateTimeUtc"],
        b["registrationState"]["createdDateTimeUtc"]
    );
    assert_ne!(
        a["registrationState"]["etag"],
        b["registrationState"]["etag"]
    );

    let st = emu.registration_state("STICKY").unwrap();
    assert_eq!(st["assignedHub"], "hub-b.azure-devices.net");
    assert!(emu.registration_state("nobody").is_none());

    // reconfigure at run time: records are kept
    let mut cfg = emu.config();
    cfg.enrollments[1].hubs = vec!["hub-a.azure-devices.net".into()];
    emu.reconfigure(cfg);
    let d = register_sas(&mut c, "sticky", KEY, None).json();
    assert_eq!(
        d["registrationState"]["assignedHub"],
        "hub-a.azure-devices.net"
    );
    assert_eq!(
        d["registrationState"]["substatus"],
        "reprovisionedToInitialAssignment"
    );
}

#[test]
fn hashed_allocation_is_stable_and_spreads() {
    let emu = start(&format!(
        "{}\n[[enrollments]]\ngroup_id = \"g\"\nattestation = \"symmetric_key\"\nprimary_key = \"{GROUP_KEY}\"\n",
        base_toml()
    ));
    let mut c = Client::connect(&emu);
    let mut hubs = std::collections::BTreeSet::new();
    for i in 0..12 {
        let id = format!("dev-{i}");
        let k = derived(GROUP_KEY, &id);
        let a =
            register_sas(&mut c, &id, &k, None).json()["registrationState"]["assignedHub"].clone();
        let b = register_sas(&mut c, &id, &k, None).json()["registrationState"].clone();
        assert_eq!(a, b["assignedHub"]);
        assert_eq!(b["substatus"], "initialAssignment");
        hubs.insert(a.as_str().unwrap().to_string());
    }
    assert_eq!(hubs.len(), 2);
}

#[test]
fn csr_issuance_on_2025_07_01_preview() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let emu = start(&sym_toml());
    let mut c = Client::connect(&emu);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dev-sym");
    let csr = b64.encode(params.serialize_request(&key).unwrap().der());
    let tok = sas(KEY, "dev-sym");
    let path = format!("/{SCOPE}/registrations/dev-sym/register?api-version=2025-07-01-preview");
    let body = format!(r#"{{"registrationId":"dev-sym","csr":"{csr}"}}"#);
    let r = c.request("PUT", &path, &[("Authorization", &tok), JSON], Some(&body));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let op = r.json()["operationId"].as_str().unwrap().to_string();
    let opp =
        format!("/{SCOPE}/registrations/dev-sym/operations/{op}?api-version=2025-07-01-preview");
    let mut p = c.request("GET", &opp, &[("Authorization", &tok)], None);
    while p.status == 202 {
        p = c.request("GET", &opp, &[("Authorization", &tok)], None);
    }
    let chain = p.json()["registrationState"]["issuedCertificateChain"].clone();
    let chain: Vec<Vec<u8>> = chain
        .as_array()
        .unwrap()
        .iter()
        .map(|s| b64.decode(s.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(chain.len(), 2);
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ca = CertificateDer::from_pem_slice(emu.ca_pem().as_bytes()).unwrap();
    assert_eq!(chain[1], ca.as_ref());
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(
        leaf.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "dev-sym"
    );
    // not on older versions, not in the lookup, and the CN must match
    let r = c.request(
        "PUT",
        &reg_path("dev-sym"),
        &[("Authorization", &tok), JSON],
        Some(&body),
    );
    assert_eq!(r.status, 400);
    let lp = format!("/{SCOPE}/registrations/dev-sym?api-version=2025-07-01-preview");
    let r = c.request("POST", &lp, &[("Authorization", &tok), JSON], Some(&body));
    assert_eq!(r.status, 400);
    let l = c.request("POST", &lp, &[("Authorization", &tok), JSON], Some("{}"));
    assert_eq!(l.status, 200);
    assert!(l.json().get("issuedCertificateChain").is_none());
    let mut other = rcgen::CertificateParams::default();
    other
        .distinguished_name
        .push(rcgen::DnType::CommonName, "not-me");
    let bad = b64.encode(other.serialize_request(&key).unwrap().der());
    let r = c.request(
        "PUT",
        &path,
        &[("Authorization", &tok), JSON],
        Some(&format!(r#"{{"csr":"{bad}"}}"#)),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn expect_100_continue() {
    let emu = start(&sym_toml());
    let mut c = Client::connect(&emu);
    let tok = sas(KEY, "dev-sym");
    let body = r#"{"registrationId":"dev-sym"}"#;
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: x\r\nAuthorization: {tok}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        reg_path("dev-sym"),
        body.len()
    );
    c.send_raw(head.as_bytes()).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 100);
    c.send_raw(body.as_bytes()).unwrap();
    assert_eq!(c.read_response().unwrap().status, 202);
}

#[test]
fn content_length_responses_when_configured() {
    let emu = start(&format!("chunked_responses = false\n{}", sym_toml()));
    let mut c = Client::connect(&emu);
    let r = register_sas(&mut c, "dev-sym", KEY, None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length").unwrap(),
        r.body.len().to_string()
    );
    assert!(r.header("Transfer-Encoding").is_none());
}
