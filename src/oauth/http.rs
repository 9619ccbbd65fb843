//! One way to GET from the provider: bounded in time (the client's timeout) and in size, a
//! non-2xx is an error, and the body comes back as bytes for the caller's parser.

use super::ProviderError;

/// Large enough for any discovery document, key set or userinfo answer.
pub const MAX_BODY: usize = 256 * 1024;

pub async fn body(request: oauth2::reqwest::RequestBuilder) -> Result<Vec<u8>, ProviderError> {
    let mut response = request
        .header("accept", "application/json")
        .send()
        .await
        .map_err(ProviderError::from_reqwest)?;
    if !response.status().is_success() {
        return Err(ProviderError::UnexpectedStatus(response.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(ProviderError::from_reqwest)?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::Malformed("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
