// Minimal h2 0.4.20 server: prints what the server API yields for each request.
// `--respond-first`: answer (END_STREAM) before reading the request body, then read
// the body and trailers to their end anyway, as a server that validates the whole
// request while answering early would.
use http::Response;
use tokio::net::TcpListener;

fn main() {
    let respond_first = std::env::args().any(|a| a == "--respond-first");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut conn = match h2::server::handshake(socket).await {
                    Ok(conn) => conn,
                    Err(e) => return println!("handshake: {e}"),
                };
                while let Some(accepted) = conn.accept().await {
                    let (req, mut respond) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => return println!("connection error: {e}"),
                    };
                    tokio::spawn(async move {
                        println!("request: {} uri={:?} headers={:?}", req.method(), req.uri(), req.headers());
                        let mut body = req.into_body();
                        if respond_first {
                            respond.send_response(Response::new(()), true).unwrap();
                        }
                        let mut len = 0;
                        while let Some(chunk) = body.data().await {
                            match chunk {
                                Ok(bytes) => {
                                    len += bytes.len();
                                    let _ = body.flow_control().release_capacity(bytes.len());
                                }
                                Err(e) => return println!("  body error: {e}"),
                            }
                        }
                        match body.trailers().await {
                            Ok(trailers) => println!("  body: {len} bytes, trailers: {trailers:?}"),
                            Err(e) => return println!("  trailers error: {e}"),
                        }
                        if !respond_first {
                            respond.send_response(Response::new(()), true).unwrap();
                        }
                    });
                }
            });
        }
    });
}
