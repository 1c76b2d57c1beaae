//! Redaction of secrets in log lines, shared by the C log bridge and the CLI's `-v` output.

/// Masks anything that looks like a credential: SAS signatures and tokens,
/// `SharedAccessKey=` values and Basic auth. The library never logs them;
/// this is a second line of defence for messages from dependencies.
pub fn redact(s: &str) -> String {
    let mut out = s.to_owned();
    // (marker, whether the secret also ends at '&' or ';', not only at whitespace)
    for (marker, in_query) in [
        ("sig=", true),
        ("SharedAccessKey=", true),
        ("SharedAccessSignature ", false),
        ("Basic ", false),
    ] {
        let mut from = 0;
        while let Some(i) = out[from..].find(marker) {
            let start = from + i + marker.len();
            let end = out[start..]
                .find(|c: char| c.is_whitespace() || (in_query && (c == '&' || c == ';')))
                .map_or(out.len(), |j| start + j);
            out.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_secrets() {
        assert_eq!(
            redact(
                "Authorization: SharedAccessSignature sr=a%2fb&sig=abc%2B&se=1&skn=registration"
            ),
            "Authorization: SharedAccessSignature <redacted>"
        );
        assert_eq!(
            redact("HostName=h;DeviceId=d;SharedAccessKey=secret=="),
            "HostName=h;DeviceId=d;SharedAccessKey=<redacted>"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
