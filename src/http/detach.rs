//! Request header values copied out of the connection's read buffer, before anything
//! else sees the request.
//!
//! actix-http parses a request head in place: every header value is a slice of the
//! connection's read buffer (at least 8 KiB), which keeps the whole buffer alive as long
//! as the value lives. And actix keeps up to 128 request heads per worker thread (and
//! actix-web up to 128 requests) for reuse without clearing them until reused, so after a
//! burst of simultaneous connections each worker held the read buffers of up to 256 closed
//! connections (found with heaptrack). Copying the values (one small allocation per value)
//! lets each buffer go with its connection: idle RSS after `cargo bench --bench signin`'s
//! burst of 500 fell from 38.3 to 32.4 MiB (issue 16, `benches/README.md`). Names need no
//! copy: the http crate copies a non-standard header name.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::middleware::Next;

/// The outermost middleware: `req` is not shared yet, so its head can be changed.
pub async fn own_header_values(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let headers = req.headers_mut();
    let parsed = std::mem::take(headers);
    headers.reserve(parsed.len());
    for (name, value) in parsed {
        // A value actix accepted is a valid value; should it not copy, it is kept as is.
        let owned = HeaderValue::from_bytes(value.as_bytes()).unwrap_or(value);
        headers.append(name, owned);
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{test, web, App, HttpRequest};

    /// Every value of every header reaches the handler, repeated names in their order.
    #[tokio::test]
    async fn every_value_is_kept_in_order() {
        let app = test::init_service(App::new().wrap(from_fn(super::own_header_values)).route(
            "/",
            web::get().to(|r: HttpRequest| async move {
                let all =
                    |n: &str| r.headers().get_all(n).filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
                format!("{}|{}|{}", all("x-a"), all("cookie"), r.headers().len())
            }),
        ))
        .await;
        let req = test::TestRequest::get()
            .uri("/")
            .append_header(("x-a", "1"))
            .append_header(("cookie", "s=2"))
            .append_header(("x-a", "3"))
            .to_request();
        let body = test::call_and_read_body(&app, req).await;
        assert_eq!(&body[..], b"1,3|s=2|3");
    }
}
