//! The request span every router shares (`serve`, the Functions handler, `pbx run --listen`):
//! a `request` span with the method and the matched route, and one debug line per response
//! with its status and latency.
//!
//! Only the route *pattern* (`/api/presence/{id}`), never the path: ids in paths are personal
//! data. Never the query string either: it can carry Graph's `validationToken` or the status
//! page's `?token=`. A request no route matched is `route = "(none)"`.

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::Request;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::{Level, Span};

/// The layer's type, so routers can name it.
pub type RequestTrace = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request<Body>) -> Span,
    (),
    DefaultOnResponse,
    (),
    (),
    (),
>;

/// The request span and the per-response debug line (status, latency in ms). Failures are
/// not logged again here: the handlers log what went wrong, once.
pub fn layer() -> RequestTrace {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request<Body>) -> Span)
        .on_request(())
        .on_response(
            DefaultOnResponse::new()
                .level(Level::DEBUG)
                .latency_unit(LatencyUnit::Millis),
        )
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

fn request_span(req: &Request<Body>) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(none)", MatchedPath::as_str);
    tracing::info_span!("request", method = %req.method(), route = %route)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    /// Everything the subscriber writes, for the assertions.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_request_line_names_the_route_status_and_latency_but_not_the_path_or_query() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = Router::new()
            .route(
                "/api/presence/{id}",
                get(|| async {
                    tracing::info!("inside the handler");
                    "ok"
                }),
            )
            .layer(layer());
        let req = Request::get("/api/presence/jane.doe@contoso.com?token=s3cret")
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let unmatched = Request::get("/nowhere/jane.doe?validationToken=abc")
            .body(Body::empty())
            .unwrap();
        let resp = app.oneshot(unmatched).await.unwrap();
        assert_eq!(resp.status(), 404);

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("request{method=GET route=/api/presence/{id}}: ")
                && text.contains("inside the handler"),
            "the handler's line is in the request span: {text}"
        );
        assert!(
            text.contains("status=200") && text.contains("latency="),
            "{text}"
        );
        assert!(text.contains("route=(none)") && text.contains("status=404"));
        for private in ["jane", "s3cret", "token=", "validationToken", "nowhere"] {
            assert!(!text.contains(private), "{private} logged: {text}");
        }
    }
}
