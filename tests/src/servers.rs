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
/// listening on 127.0.0.1 and [::1]. Every path answers 200 with a fixed body, except `/missing*`
/// (404) and `/fail*` (503).
/// sendfile is off so response bodies go through write/writev and are captured.
pub fn nginx() -> Server {
    nginx_listening("")
}

/// nginx as [`nginx`] does, speaking HTTP/2 in clear text (h2c, prior knowledge) instead of
/// HTTP/1.x.
pub fn nginx_h2c() -> Server {
    nginx_listening(" http2")
}

fn nginx_listening(listen_options: &str) -> Server {
    let dir = scratch_dir("nginx");
    let port = crate::free_port();
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {dir}/error.log;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  sendfile off;\n  keepalive_requests 100000;\n\
           client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fcgi;\n\
           uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port}{listen_options};\n    listen [::1]:{port}{listen_options};\n\
             location / {{ return 200 \"hello from nginx\\n\"; }}\n\
             location /missing {{ return 404; }}\n    location /fail {{ return 503; }}\n  }}\n}}\n",
        dir = dir.display()
    );
    start_nginx(dir, port, conf)
}

/// Writes `conf` into `dir` and runs nginx with it in the foreground, ready on 127.0.0.1:`port`.
fn start_nginx(dir: PathBuf, port: u16, conf: String) -> Server {
    let bin = require_tool("nginx", "nginx-light");
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

/// nginx as [`nginx`] does, over TLS (a self-signed certificate made with openssl for the test),
/// on 127.0.0.1.
pub fn nginx_tls() -> Server {
    let openssl = require_tool("openssl", "openssl");
    let dir = scratch_dir("nginx-tls");
    let made = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(made.success(), "openssl could not make a certificate");
    let port = crate::free_port();
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {dir}/error.log;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
           fastcgi_temp_path {dir}/fcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {dir}/cert.pem;\n\
             ssl_certificate_key {dir}/key.pem;\n    location / {{ return 200 \"hello over tls\\n\"; }}\n  }}\n}}\n",
        dir = dir.display()
    );
    start_nginx(dir, port, conf)
}

/// nginx serving the files under `root` (a BTF archive, say) on 127.0.0.1, one process.
pub fn nginx_files(root: &std::path::Path) -> Server {
    let dir = scratch_dir("nginx-files");
    let port = crate::free_port();
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {dir}/error.log;\npid {dir}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {dir}/access.log;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
           fastcgi_temp_path {dir}/fcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n",
        dir = dir.display(),
        root = root.display()
    );
    start_nginx(dir, port, conf)
}

impl Server {
    /// Requests nginx_files logged so far.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default().lines().map(String::from).collect()
    }
}

/// A server that accepts connections and never says anything: what a hung archive looks like.
pub struct Silent {
    pub port: u16,
    _listener: std::sync::Arc<std::net::TcpListener>,
}

pub fn silent() -> Silent {
    let listener = std::sync::Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let port = listener.local_addr().unwrap().port();
    let l = listener.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in l.incoming().flatten() {
            held.push(conn);
        }
    });
    Silent { port, _listener: listener }
}

/// dnsmasq answering `*.strata.test` with 192.0.2.7 and 2001:db8::7, and NXDOMAIN for
/// `*.nx.test`, on 127.0.0.1 (UDP and TCP), nothing upstream.
pub fn dnsmasq() -> Server {
    let bin = require_tool("dnsmasq", "dnsmasq-base");
    let dir = scratch_dir("dnsmasq");
    let port = crate::free_port();
    let mut child = Command::new(bin)
        .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"])
        .args(["--listen-address=127.0.0.1", "--pid-file=", "--user=root", "--address=/strata.test/192.0.2.7"])
        .args(["--address=/strata.test/2001:db8::7", "--address=/nx.test/"])
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn dnsmasq");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "dnsmasq");
    Server { child, port, dir }
}

/// redis-server on 127.0.0.1 without persistence.
pub fn redis() -> Server {
    let bin = require_tool("redis-server", "redis-server");
    let dir = scratch_dir("redis");
    let port = crate::free_port();
    let mut child = Command::new(bin)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--port")
        .arg(port.to_string())
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn redis-server");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "redis-server");
    Server { child, port, dir }
}

/// A program of the installed PostgreSQL server package (initdb, postgres, pgbench), which Debian
/// keeps in a versioned directory.
pub fn postgres_bin(name: &str) -> PathBuf {
    ["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"]
        .into_iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("PostgreSQL's {name} is not installed: these tests need it (apt-get install postgresql)")
        })
}

/// A PostgreSQL server of its own (initdb into a scratch directory, trust authentication) on
/// 127.0.0.1, run as the `postgres` user as PostgreSQL insists.
pub fn postgres() -> Server {
    let bin_dir = postgres_bin("initdb").parent().unwrap().to_path_buf();
    let dir = scratch_dir("postgres");
    let data = dir.join("data");
    let port = crate::free_port();
    let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().unwrap();
    assert!(chown.success(), "chown {} to postgres", dir.display());
    let as_postgres = |bin: &str| {
        let mut c = Command::new(crate::require_tool("setpriv", "util-linux"));
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(bin_dir.join(bin));
        c
    };
    crate::run_ok(as_postgres("initdb").args(["--auth=trust", "--username=postgres", "--no-sync", "-D"]).arg(&data));
    let mut child = as_postgres("postgres")
        .arg("-D")
        .arg(&data)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn postgres");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "postgres");
    Server { child, port, dir }
}

/// A MariaDB server of its own (a fresh data directory, no grant tables: any user may connect) on
/// 127.0.0.1, run as the `mysql` user.
pub fn mariadb() -> Server {
    let install_db = require_tool("mariadb-install-db", "mariadb-server");
    let mariadbd = require_tool("mariadbd", "mariadb-server");
    let dir = scratch_dir("mariadb");
    let data = dir.join("data");
    let port = crate::free_port();
    crate::run_ok(
        Command::new(install_db)
            .args(["--no-defaults", "--user=mysql", "--skip-test-db", "--auth-root-authentication-method=normal"])
            .arg(format!("--datadir={}", data.display())),
    );
    let chown = Command::new("chown").args(["-R", "mysql:mysql"]).arg(&dir).status().unwrap();
    assert!(chown.success(), "chown {} to mysql", dir.display());
    let mut child = Command::new(mariadbd)
        .args(["--no-defaults", "--user=mysql", "--skip-grant-tables", "--bind-address=127.0.0.1"])
        .args(["--skip-log-bin", "--innodb-buffer-pool-size=16M", "--skip-name-resolve"])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mariadbd");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "mariadbd");
    Server { child, port, dir }
}

/// The tonic gRPC server of tests/grpc-peer (`helloworld.Greeter/SayHello`; the name "missing"
/// gets NOT_FOUND) on 127.0.0.1, over h2c.
pub fn grpc_greeter() -> Server {
    let dir = scratch_dir("grpc");
    let port = crate::free_port();
    let mut child = Command::new(crate::grpc_peer_bin())
        .args(["serve", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn strata-grpc-peer");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "strata-grpc-peer");
    Server { child, port, dir }
}

/// Where `.ci/run` installs the Kafka-protocol broker (tansu, a broker written in Rust; Debian packages
/// none), outside the checkout so only a machine's first run builds it.
pub const TANSU_DEFAULT: &str = "/var/cache/strata-ci-tools/tansu-0.6.0/bin/tansu";

/// A Kafka-protocol broker (tansu, in-memory storage) on 127.0.0.1. STRATA_TANSU names another
/// binary.
pub fn kafka_broker() -> Server {
    let bin = std::env::var_os("STRATA_TANSU").map_or_else(|| PathBuf::from(TANSU_DEFAULT), PathBuf::from);
    assert!(
        bin.is_file(),
        "the Kafka-protocol broker {} is not installed: these tests need it (`cargo install --locked --root \
         /var/cache/strata-ci-tools/tansu-0.6.0 tansu@0.6.0 --features dynostore`, as .ci/run does, or set \
         STRATA_TANSU)",
        bin.display()
    );
    let dir = scratch_dir("kafka");
    let port = crate::free_port();
    let listener = format!("tcp://127.0.0.1:{port}");
    let mut child = Command::new(bin)
        .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
        .args(["--storage-engine", "memory://tansu/"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tansu");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "tansu");
    Server { child, port, dir }
}

/// Debian's Prometheus server scraping `targets` (job `strata`) every second, with `rule_files`
/// loaded, on 127.0.0.1. Returns once it answers /-/ready.
pub fn prometheus(targets: &[u16], rule_files: &[PathBuf]) -> Server {
    let bin = require_tool("prometheus", "prometheus");
    let dir = scratch_dir("prometheus");
    let port = crate::free_port();
    let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    let rules: Vec<String> = rule_files.iter().map(|f| format!("'{}'", f.display())).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{}]\nscrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: [{}]\n",
        rules.join(", "),
        targets.join(", ")
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let mut child = Command::new(bin)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prometheus");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "prometheus");
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::http_get(port, "/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "prometheus on :{port} not ready within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    Server { child, port, dir }
}

/// The OTLP/gRPC receiver of tests/otlp-sink on `port` (a fixed one, so a restarted sink takes
/// the place of a stopped one), appending what it receives to `out`.
pub fn otlp_sink(port: u16, out: &std::path::Path) -> Server {
    let dir = scratch_dir("otlp");
    let mut child = Command::new(crate::otlp_sink_bin())
        .arg(port.to_string())
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn strata-otlp-sink");
    wait_for_tcp(&format!("127.0.0.1:{port}"), &mut child, "strata-otlp-sink");
    Server { child, port, dir }
}
