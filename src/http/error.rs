//! Errors as pages: every refusal the browser can see is a [`PageError`] with a status
//! and a sentence a person can act on. Internal failures are logged with their cause and
//! shown as a plain 500 without it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl PageError {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> PageError {
        PageError { status, title, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, "This link cannot be used", message)
    }
    pub fn not_found(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::NOT_FOUND, "Page not found", message)
    }
    pub fn forbidden(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::FORBIDDEN, "Not allowed", message)
    }
    /// Logs `cause` and returns an opaque 500.
    pub fn internal(cause: impl std::fmt::Display) -> PageError {
        tracing::error!(%cause, "internal error");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Lanyard could not finish this request. Try again in a moment.",
        )
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let body =
            ErrorPage { title: self.title, message: &self.message }.render().unwrap_or_else(|_| self.message.clone());
        HttpResponse::build(self.status).content_type("text/html; charset=utf-8").body(body)
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        PageError::internal(e)
    }
}
impl From<crate::tenant::TenantError> for PageError {
    fn from(e: crate::tenant::TenantError) -> Self {
        PageError::internal(e)
    }
}
impl From<crate::user::UserError> for PageError {
    fn from(e: crate::user::UserError) -> Self {
        PageError::internal(e)
    }
}
impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError::internal(e)
    }
}
