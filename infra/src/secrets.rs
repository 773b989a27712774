//! Secrets at rest (a tenant's Salesforce client secret): sealed with AES-256-GCM under the
//! server's key, a fresh random nonce each time. The key is SHA-256 of the configured
//! secret (`CHRONICLE_SECRETS_KEY`, or the one generated into the data dir), so any long
//! random string serves. A sealed value reads `v1:<base64 of nonce and ciphertext>`.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use domain::salesforce::SealedSecret;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("a sealed secret cannot be opened: {0}")]
pub struct SecretError(&'static str);

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

const PREFIX: &str = "v1:";

impl SecretBox {
    pub fn new(key_material: &[u8]) -> Self {
        let key = Sha256::digest(key_material);
        Self {
            cipher: Aes256Gcm::new(&key),
        }
    }

    pub fn seal(&self, plain: &str) -> SealedSecret {
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        // Encryption with a valid key and nonce cannot fail for inputs this size.
        let sealed = self
            .cipher
            .encrypt(&nonce, plain.as_bytes())
            .unwrap_or_default();
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed);
        SealedSecret(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &SealedSecret) -> Result<String, SecretError> {
        let raw = sealed
            .0
            .strip_prefix(PREFIX)
            .ok_or(SecretError("unknown format"))?;
        let bytes = STANDARD
            .decode(raw)
            .map_err(|_| SecretError("not base64"))?;
        if bytes.len() < 12 + 16 {
            return Err(SecretError("too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SecretError("bad nonce"))?;
        let plain = self
            .cipher
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| SecretError("wrong key or altered"))?;
        String::from_utf8(plain).map_err(|_| SecretError("not text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let b = SecretBox::new(b"one key");
        let sealed = b.seal("s3cr3t");
        assert!(!sealed.0.contains("s3cr3t"));
        assert_ne!(sealed, b.seal("s3cr3t"), "a fresh nonce each time");
        assert_eq!(b.open(&sealed).expect("open"), "s3cr3t");
        assert!(SecretBox::new(b"another key").open(&sealed).is_err());
        let mut altered = sealed.0.clone();
        altered.pop();
        altered.push(if sealed.0.ends_with('A') { 'B' } else { 'A' });
        assert!(b.open(&SealedSecret(altered)).is_err());
    }
}
