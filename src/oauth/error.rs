//! Why a call to the provider failed. Texts name codes, statuses and causes, never a code or
//! token.

use oauth2::basic::BasicErrorResponse;
use oauth2::{HttpClientError, RequestTokenError};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider unreachable: {0}")]
    Unreachable(String),
    #[error(
        "the provider's TLS certificate is not trusted ({0}); for a private CA set \
         GATEHOUSE__PROVIDER__CA_FILE"
    )]
    Certificate(String),
    #[error("provider did not answer within the timeout")]
    Timeout,
    #[error("provider answered with OAuth error `{0}`")]
    ErrorResponse(String),
    #[error("provider answered with HTTP status {0}")]
    UnexpectedStatus(u16),
    #[error("provider's answer is malformed: {0}")]
    Malformed(String),
    #[error("ID token rejected: {0}")]
    IdToken(String),
    #[error("provider settings are incomplete: {0}")]
    Settings(String),
}

impl ProviderError {
    pub fn from_reqwest(e: oauth2::reqwest::Error) -> Self {
        if e.is_timeout() {
            return ProviderError::Timeout;
        }
        if let Some(status) = e.status() {
            return ProviderError::UnexpectedStatus(status.as_u16());
        }
        // reqwest's own text names the URL only; the cause (refused, DNS, a certificate rustls
        // refused) is further down the chain. rustls errors reach us as text through an
        // io::Error, so the certificate case is recognised by its words.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        if let Some(tls) = causes
            .iter()
            .find(|c| c.to_ascii_lowercase().contains("certificate"))
        {
            return ProviderError::Certificate(printable(tls));
        }
        ProviderError::Unreachable(
            causes
                .last()
                .map(|c| printable(c))
                .unwrap_or_else(|| "no answer".into()),
        )
    }
}

/// A cause as one bounded log-friendly line.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

pub(super) fn classify(
    e: RequestTokenError<HttpClientError<oauth2::reqwest::Error>, BasicErrorResponse>,
) -> ProviderError {
    match e {
        RequestTokenError::ServerResponse(err) => {
            ProviderError::ErrorResponse(err.error().as_ref().to_owned())
        }
        RequestTokenError::Request(HttpClientError::Reqwest(e)) => ProviderError::from_reqwest(*e),
        RequestTokenError::Request(_) => ProviderError::Unreachable("request failed".into()),
        // The path only: serde messages can quote the offending value, which may be a token.
        RequestTokenError::Parse(e, _body) => {
            ProviderError::Malformed(format!("unexpected JSON at `{}`", e.path()))
        }
        RequestTokenError::Other(text) => ProviderError::Malformed(text),
    }
}

/// The `error` code of an OAuth error body, when it is one (RFC 6749 5.2 limits codes to
/// printable ASCII without `"` and `\`; anything else is not trusted into a log line).
pub(super) fn oauth_error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let fine = |b: u8| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\';
    (!parsed.error.is_empty() && parsed.error.len() <= 64 && parsed.error.bytes().all(fine))
        .then_some(parsed.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_error_codes_are_read_only_when_printable() {
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_grant","error_description":"x"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(oauth_error_code(b"<html>"), None);
        assert_eq!(oauth_error_code(br#"{"error":""}"#), None);
        assert_eq!(
            oauth_error_code("{\"error\":\"bad\\nline\"}".as_bytes()),
            None
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let e = oauth2::reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .expect_err("nothing listens");
        let text = ProviderError::from_reqwest(e).to_string();
        assert!(
            text.starts_with("provider unreachable: ") && text.to_lowercase().contains("refused"),
            "{text}"
        );
    }
}
