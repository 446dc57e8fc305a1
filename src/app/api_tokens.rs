//! Admin API tokens: created with a name, shown once, stored hashed, revocable.

use super::{App, AppError};
use crate::domain::ConfirmToken;
use crate::store;

use crate::domain::token::ApiToken;

impl App {
    /// Creates a token; returns it (the only time it is seen).
    pub async fn create_api_token(&self, name: &str) -> Result<String, AppError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(AppError::Refused(
                "a token's name is one line of 1 to 100 characters".into(),
            ));
        }
        // 256 random bits, URL-safe; only the SHA-256 is stored
        let token = ConfirmToken::generate();
        match store::api_tokens::insert_api_token(&self.db, name, &token.hash().0).await {
            Ok(()) => Ok(token.as_str().to_string()),
            Err(e) if store::unique_violation(&e).is_some() => Err(AppError::Refused(format!(
                "a token named {name} exists already"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The name of a valid token, or `None`.
    pub async fn check_api_token(&self, token: &str) -> Result<Option<String>, AppError> {
        let Some(token) = ConfirmToken::parse(token) else {
            return Ok(None);
        };
        Ok(store::api_tokens::find_api_token(&self.db, &token.hash().0).await?)
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, AppError> {
        Ok(store::api_tokens::list_api_tokens(&self.db).await?)
    }

    pub async fn revoke_api_token(&self, name: &str) -> Result<(), AppError> {
        if store::api_tokens::delete_api_token(&self.db, name).await? {
            Ok(())
        } else {
            Err(AppError::Refused(format!("there is no token named {name}")))
        }
    }
}
