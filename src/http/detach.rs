//! Request header values copied out of the connection's read buffer, before anything
//! else sees the request.
//!
//! actix-http parses a request head in place: every header value is a slice of the
//! connection's read buffer (at least 8 KiB), which keeps the whole buffer alive as long
//! as the value lives. And actix keeps up to 128 request heads per worker thread (and
//! actix-web up to 128 requests) for reuse without clearing them until reused, so after a
//! burst of simultaneous connections each worker held the read buffers of up to 256 closed
//! connections: about 10 MiB of idle memory after 500 simultaneous sign-ins (issue 16,
//! measured with heaptrack; `benches/README.md`). Copying the values (a few small
//! allocations, well under a microsecond per request) lets each buffer go with its
//! connection. Names need no copy: the http crate copies a non-standard header name.

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
