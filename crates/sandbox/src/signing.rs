//! Webhook signatures, as pure functions.
//!
//! - QBO `intuit-signature`: `base64(HMAC-SHA256(key = verifier token, msg = raw body))`
//!   (reference §3.8; the test vector there is reproduced in the unit tests below).
//! - Fyle `X-Fyle-Signature` (optional, not sent by production Fyle): hex HMAC-SHA256 of the body.
//! - Standard Webhooks (optional): `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
//!   A secret of the form `whsec_<base64>` is base64-decoded to get the key, as the Standard
//!   Webhooks specification does; any other secret is used as raw UTF-8 bytes.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of every length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The `intuit-signature` header value for a QBO webhook body.
pub fn intuit_signature(verifier_token: &str, body: &[u8]) -> String {
    STANDARD.encode(hmac_sha256(verifier_token.as_bytes(), &[body]))
}

/// The optional `X-Fyle-Signature` header value: lowercase hex HMAC-SHA256 of the body.
pub fn fyle_signature(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
}

/// The Standard Webhooks key for a secret (`whsec_<base64>` decoded, else the raw bytes).
pub fn standard_webhooks_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The Standard Webhooks `webhook-signature` header value (`v1,<base64>`).
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(
        &standard_webhooks_key(secret),
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §3.8 test vector, byte for byte.
    const VECTOR_BODY: &str = r#"{"eventNotifications":[{"realmId":"9130357766900456","dataChangeEvent":{"entities":[{"name":"Customer","id":"58","operation":"Update","lastUpdated":"2024-05-02T10:15:30.000Z"}]}}]}"#;

    #[test]
    fn intuit_signature_matches_reference_vector() {
        assert_eq!(VECTOR_BODY.len(), 180);
        assert_eq!(
            intuit_signature("simulator-verifier-token", VECTOR_BODY.as_bytes()),
            "eM57Bbdh4NDu5agmb3xuLyRdjiadJH2YwPhhCXoOc5A="
        );
    }

    #[test]
    fn fyle_signature_is_hex_of_the_same_digest() {
        assert_eq!(
            fyle_signature("simulator-verifier-token", VECTOR_BODY.as_bytes()),
            "78ce7b05b761e0d0eee5a8266f7c6e2f245d8e269d247d98c0f861097a0e7390"
        );
    }

    /// Expected values computed independently (Python `hmac`/`hashlib`/`base64`):
    /// `base64(hmac.new(b"s3cret", b"msg_1.1700000000.{}", sha256).digest())`.
    #[test]
    fn standard_webhooks_signs_id_timestamp_and_body() {
        let sig = standard_webhooks_signature("s3cret", "msg_1", 1_700_000_000, b"{}");
        assert_eq!(sig, "v1,uNtIplUOMTIs6G1RRPpb6NsRUZZLxUiBZsZiXV3ycuM=");
        // whsec_ secrets are base64-decoded first ("czNjcmV0" is base64 of "s3cret")
        let wh = standard_webhooks_signature("whsec_czNjcmV0", "msg_1", 1_700_000_000, b"{}");
        assert_eq!(wh, "v1,uNtIplUOMTIs6G1RRPpb6NsRUZZLxUiBZsZiXV3ycuM=");
    }
}
