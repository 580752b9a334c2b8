//! A fixed workload for instruction counting (not a criterion bench): runs the
//! in-process handler `ITERATIONS` times (default 10 000) on `POST /greet
//! {"name":"John"}`. `scripts/perf-gate` runs it under callgrind at two iteration
//! counts and divides the difference, so start-up cost cancels out.

mod common;

fn main() {
    let iterations: usize = std::env::var("ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = common::runtime();
    let middleware = common::middleware();
    let request = common::post("/greet", Some("application/json"), common::TINY);
    runtime.block_on(async {
        for _ in 0..iterations {
            let Ok(response) = middleware.call(request.clone(), None, ()).await;
            assert_eq!(response.status(), 200);
            std::hint::black_box(response);
        }
    });
}
