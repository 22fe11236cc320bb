//! Real servers from Debian's packages, configured in a temporary directory, on loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::require_tool;

/// A running server process, killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-{name}-{}-{}", std::process::id(), crate::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for_tcp(addr: &str, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("{what} exited ({st}) before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {addr} within 10 s");
}

/// nginx as one process (master_process off, so the pid that accepts is the pid spawned),
/// listening on 127.0.0.1 and [::1]. `/` answers a fixed body; `/big` a `body_bytes` one.
/// sendfile is off so response bodies go through write/writev and are captured.
pub fn nginx() -> Server {
    let bin = require_tool("nginx", "nginx-light");
    let dir = scratch_dir("nginx");
    let port = crate::free_port();
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {dir}/error.log;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  sendfile off;\n  keepalive_requests 100000;\n\
           client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fcgi;\n\
           uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    listen [::1]:{port};\n\
             location / {{ return 200 \"hello from nginx\\n\"; }}\n  }}\n}}\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nginx");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "nginx");
    Server { child, port, dir }
}

/// dnsmasq answering `*.strata.test` with 192.0.2.7 on 127.0.0.1 (UDP and TCP), nothing upstream.
pub fn dnsmasq() -> Server {
    let bin = require_tool("dnsmasq", "dnsmasq-base");
    let dir = scratch_dir("dnsmasq");
    let port = crate::free_port();
    let mut child = Command::new(bin)
        .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"])
        .args(["--listen-address=127.0.0.1", "--pid-file=", "--user=root", "--address=/strata.test/192.0.2.7"])
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dnsmasq");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "dnsmasq");
    Server { child, port, dir }
}
