//! The agent's plain HTTP endpoint: `GET /metrics` for Prometheus, and
//! nothing else (it carries nothing secret; checkpoints are `peer`'s).

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

/// Serves `GET /metrics` on `listener`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(move || async move { metrics.render() }));
    axum::serve(listener, app).await
}
