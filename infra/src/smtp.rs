//! The mail worker's SMTP client (lettre): one connection per delivery, STARTTLS whenever
//! the server offers it (`smtp://`), required with `?tls=required`, TLS from the start with
//! `smtps://`, none with `?tls=none`; credentials from the URL. The server's certificate
//! is checked against the system's roots, and the roots of `ca_file` when given (a private
//! relay's CA). A 5xx reply is a permanent failure; a 4xx reply, a timeout or a broken
//! connection is retryable.

use commands::attempts::CallFailure;
use commands::mail_worker::{Mailer, Outgoing};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::error::Error as _;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("CHRONICLE_SMTP_URL: {0}")]
    Url(String),
    #[error("CHRONICLE_SMTP_FROM: {0}")]
    From(String),
    #[error("CHRONICLE_SMTP_CA_FILE: {0}")]
    Ca(String),
}

/// Where and as whom mail is sent.
#[derive(Clone)]
pub struct SmtpSettings {
    /// `smtp://[user:password@]host[:port][?tls=required|none]` or `smtps://…`.
    pub url: String,
    /// The `From` of every message, `Name <address>` or a bare address.
    pub from: String,
    /// How long the server may take to answer one command.
    pub timeout: Duration,
    /// More roots (PEM) to trust for the server's certificate.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("url", &redacted(&self.url))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The URL without its password, for logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The URL lettre is given: STARTTLS when offered unless the URL says otherwise.
fn transport_url(url: &str) -> String {
    if !url.starts_with("smtp://") {
        return url.to_owned();
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if params.contains(&"tls=none") {
        params.retain(|p| !p.starts_with("tls="));
    } else if !params.iter().any(|p| p.starts_with("tls=")) {
        params.push("tls=opportunistic");
    }
    if params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(settings: &SmtpSettings) -> Result<Self, SmtpConfigError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| SmtpConfigError::From(format!("{:?}: {e}", settings.from)))?;
        let url = transport_url(&settings.url);
        let bad_url = |e: &dyn std::fmt::Display| {
            SmtpConfigError::Url(format!("{}: {e}", redacted(&settings.url)))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|e| bad_url(&e))?
            .timeout(Some(settings.timeout));
        if let Some(path) = &settings.ca_file {
            builder = builder.tls(with_roots(&url, path)?);
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

/// The TLS mode `url` asks for (as `transport_url` wrote it), trusting `ca_file`'s roots
/// besides the system's.
fn with_roots(url: &str, ca_file: &std::path::Path) -> Result<Tls, SmtpConfigError> {
    let ca = |e: &dyn std::fmt::Display| SmtpConfigError::Ca(format!("{}: {e}", ca_file.display()));
    let pem = std::fs::read(ca_file).map_err(|e| ca(&e))?;
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| SmtpConfigError::Url("no scheme".into()))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = host_port.split(':').next().unwrap_or_default();
    let params = TlsParameters::builder(host.to_owned())
        .add_root_certificate(Certificate::from_pem(&pem).map_err(|e| ca(&e))?)
        .build()
        .map_err(|e| ca(&e))?;
    Ok(match scheme {
        "smtps" => Tls::Wrapper(params),
        _ if url.contains("tls=required") => Tls::Required(params),
        _ if url.contains("tls=opportunistic") => Tls::Opportunistic(params),
        _ => Tls::None,
    })
}

/// What went wrong with a delivery, as the server said it (`550 5.1.1 …`) when it did.
fn reason(e: &lettre::transport::smtp::Error) -> String {
    match (e.status(), e.source()) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Outgoing) -> Result<String, CallFailure> {
        let to: Mailbox = mail
            .recipient
            .as_str()
            .parse()
            .map_err(|e| CallFailure::Permanent {
                reason: format!("the recipient cannot be addressed: {e}"),
            })?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .message_id(Some(format!("<{}@chronicle>", mail.message_id)))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.as_str().to_owned())
            .map_err(|e| CallFailure::Permanent {
                reason: format!("the message cannot be built: {e}"),
            })?;
        match self.transport.send(message).await {
            Ok(response) => {
                let text: Vec<&str> = response.message().collect();
                Ok(format!("{} {}", response.code(), text.join(" ")))
            }
            Err(e) if e.is_permanent() => Err(CallFailure::Permanent { reason: reason(&e) }),
            Err(e) => Err(CallFailure::Retryable {
                reason: reason(&e),
                retry_after: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starttls_is_used_when_offered_unless_the_url_says_otherwise() {
        assert_eq!(
            transport_url("smtp://mail.test:2525"),
            "smtp://mail.test:2525?tls=opportunistic"
        );
        assert_eq!(
            transport_url("smtp://mail.test?tls=required"),
            "smtp://mail.test?tls=required"
        );
        assert_eq!(
            transport_url("smtp://mail.test?tls=none"),
            "smtp://mail.test"
        );
        assert_eq!(transport_url("smtps://mail.test"), "smtps://mail.test");
    }

    #[test]
    fn a_password_never_reaches_the_logs() {
        assert_eq!(
            redacted("smtp://bank:s3cret@mail.test:587"),
            "smtp://bank:***@mail.test:587"
        );
        assert_eq!(redacted("smtp://mail.test"), "smtp://mail.test");
        let settings = SmtpSettings {
            url: "smtp://bank:s3cret@mail.test".into(),
            from: "Bank <noreply@bank.test>".into(),
            timeout: Duration::from_secs(5),
            ca_file: None,
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
        assert!(SmtpMailer::new(&settings).is_ok());
        let bad_from = SmtpSettings {
            from: "not an address".into(),
            ..settings
        };
        assert!(matches!(
            SmtpMailer::new(&bad_from),
            Err(SmtpConfigError::From(_))
        ));
    }
}
