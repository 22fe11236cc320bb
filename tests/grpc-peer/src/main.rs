//! A real gRPC peer for strata's end-to-end tests: `helloworld.Greeter/SayHello` over h2c.
//!
//! ```text
//! strata-grpc-peer serve <port>          # prints "listening" once bound, runs until killed
//! strata-grpc-peer call <port> <name>... # one connection, one SayHello per name, in order
//! ```
//!
//! No protoc and no generated code: the messages are hand-written prost structs, and both sides
//! use tonic's lower-level APIs (`tonic::client::Grpc` / `tonic::server::Grpc`) directly.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// The one method served, as it appears in the HTTP/2 `:path` pseudo-header.
const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

const USAGE: &str = "usage: strata-grpc-peer serve <port> | strata-grpc-peer call <port> <name>...";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = args.get(1).and_then(|p| p.parse::<u16>().ok());
    match (args.first().map(String::as_str), port) {
        (Some("serve"), Some(port)) if args.len() == 2 => serve(port).await,
        (Some("call"), Some(port)) if args.len() > 2 => call(port, &args[2..]).await,
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The Greeter logic: "missing" is NOT_FOUND, any other name is greeted.
async fn say_hello(req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
    let name = req.into_inner().name;
    if name == "missing" {
        return Err(Status::not_found(format!("no such greeter: {name}")));
    }
    Ok(Response::new(HelloReply { message: format!("hello {name}") }))
}

/// Routes one HTTP/2 request: SayHello goes through tonic's unary handling (decoding, framing,
/// grpc-status trailers); any other path gets UNIMPLEMENTED, as a generated server would answer.
async fn route(req: http::Request<Body>) -> Result<http::Response<Body>, Infallible> {
    if req.uri().path() != SAY_HELLO {
        return Ok(Status::unimplemented(format!("unknown method {}", req.uri().path())).into_http());
    }
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
    Ok(grpc.unary(tower::service_fn(say_hello), req).await)
}

async fn serve(port: u16) -> ExitCode {
    // Bind first ourselves, so that "listening" is printed only once connections can be accepted.
    let listener = match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("bind 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening");
    let _ = std::io::stdout().flush();
    // tonic's server speaks HTTP/2 only, without TLS: h2c with prior knowledge.
    match Server::builder().serve_with_incoming(tower::service_fn(route), TcpIncoming::from(listener)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn call(port: u16, names: &[String]) -> ExitCode {
    // `connect` opens the one TCP connection (HTTP/2) that every call below is multiplexed on.
    let channel = match Endpoint::from_shared(format!("http://127.0.0.1:{port}")) {
        Ok(endpoint) => endpoint.connect().await,
        Err(e) => Err(e),
    };
    let channel = match channel {
        Ok(channel) => channel,
        Err(e) => {
            eprintln!("connect 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    for name in names {
        // Calls are awaited one by one, so they reach the server in argument order.
        let result = match client.ready().await {
            Ok(()) => {
                let request = Request::new(HelloRequest { name: name.clone() });
                let codec = ProstCodec::<HelloRequest, HelloReply>::default();
                client.unary(request, PathAndQuery::from_static(SAY_HELLO), codec).await
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        };
        match result {
            Ok(reply) => println!("OK {}", reply.into_inner().message),
            Err(status) => println!("ERR {} {}", status.code() as i32, status.message()),
        }
    }
    ExitCode::SUCCESS
}
